"""Small pydicom writers for test inputs (CT/PET series, RTDOSE, RTSTRUCT) and round-trip tests of
the COMPASS readers on them. Other ingest tests import the writers from here; the files they write
are real DICOM (Part 10, explicit VR little endian) that pydicom and SimpleITK read too."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "PT": "1.2.840.10008.5.1.4.1.1.128",
             "RTDOSE": "1.2.840.10008.5.1.4.1.1.481.2", "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3"}
FRAME = "1.2.826.0.1.3680043.8.498.11111111111111"


def _base(modality, patient="P001", frame=FRAME, when=dt.datetime(2026, 1, 5, 9, 0, 0), study_uid=None):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = patient
    ds.PatientName = patient
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = frame
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S")
    return ds


def _save(ds, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _pixels(ds, plane):
    plane = np.asarray(plane)
    ds.Rows, ds.Columns = plane.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16 if plane.dtype.itemsize <= 2 else 32
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if np.issubdtype(plane.dtype, np.signedinteger) else 0
    ds.PixelData = np.ascontiguousarray(plane).tobytes()


def write_series(folder, stored_zyx, modality="CT", origin=(0.0, 0.0, 0.0), spacing=(1.0, 1.0, 2.0),
                 orientation=(1, 0, 0, 0, 1, 0), slope=1.0, intercept=0.0, patient="P001", frame=FRAME,
                 when=dt.datetime(2026, 1, 5, 9, 0, 0), study_uid=None, extra=None, positions=None):
    """One file per slice (names in reverse slice order, so readers must sort). `stored_zyx`: int16 /
    uint16 stored values; real value = stored * slope + intercept. `positions` overrides the slice
    positions (to make gaps); `extra` adds tags to every slice (callable(ds, z) or dict)."""
    stored_zyx = np.asarray(stored_zyx)
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row, col)
    series_uid, study_uid = generate_uid(), study_uid or generate_uid()
    paths = []
    for z, plane in enumerate(stored_zyx):
        ds = _base(modality, patient, frame, when, study_uid)
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = z + 1
        pos = np.array(origin, float) + z * spacing[2] * normal if positions is None else np.asarray(positions[z])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]   # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        _pixels(ds, plane)
        if callable(extra):
            extra(ds, z)
        elif extra:
            for k, v in extra.items():
                setattr(ds, k, v)
        paths.append(_save(ds, Path(folder) / f"IM{len(stored_zyx) - z:04d}.dcm"))
    return paths


def pet_info(ds, dose_bq=370e6, half_life_s=6586.2, injection="080000", weight_kg=75.0, decay="START",
             units="BQML"):
    """Add the SUV-relevant PET tags to a dataset."""
    ds.Units = units
    ds.DecayCorrection = decay
    ds.PatientWeight = f"{weight_kg}"
    info = Dataset()
    info.RadionuclideTotalDose = f"{dose_bq}"
    info.RadionuclideHalfLife = f"{half_life_s}"
    info.RadiopharmaceuticalStartTime = injection
    ds.RadiopharmaceuticalInformationSequence = Sequence([info])


def write_rtdose(path, dose_gy_zyx, origin=(0.0, 0.0, 0.0), spacing=(2.0, 2.0, 3.0), scaling=1e-4,
                 units="GY", absolute_offsets=False, patient="P001", frame=FRAME,
                 when=dt.datetime(2026, 1, 5, 9, 0, 0), study_uid=None, omit=(), extra=None):
    """Multi-frame RTDOSE (uint32 stored values = dose / scaling, in `units`)."""
    dose = np.asarray(dose_gy_zyx, float)
    ds = _base("RTDOSE", patient, frame, when, study_uid)
    ds.NumberOfFrames = dose.shape[0]
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.ImagePositionPatient = [f"{v:.6f}" for v in origin]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
    offsets = np.arange(dose.shape[0]) * spacing[2] + (origin[2] if absolute_offsets else 0.0)
    ds.GridFrameOffsetVector = [f"{v:.6f}" for v in offsets]
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = units, "PHYSICAL", "FRACTION"
    ds.DoseGridScaling = f"{scaling:.10g}"
    _pixels(ds, np.round(dose / scaling).astype(np.uint32))
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    for k in omit:
        delattr(ds, k)
    return _save(ds, path)


def write_rtstruct(path, rois, patient="P001", frame=FRAME, referenced_series=None,
                   when=dt.datetime(2026, 1, 5, 9, 0, 0), study_uid=None):
    """RTSTRUCT with `rois` = {name: [contour (n x 3 LPS mm), ...]} (an empty list makes an ROI without
    contours)."""
    ds = _base("RTSTRUCT", patient, frame, when, study_uid)
    del ds.FrameOfReferenceUID
    ds.StructureSetLabel = "test"
    ds.StructureSetDate, ds.StructureSetTime = ds.StudyDate, ds.StudyTime
    ref = Dataset()
    ref.FrameOfReferenceUID = frame
    if referenced_series:
        study, series = Dataset(), Dataset()
        series.SeriesInstanceUID = referenced_series
        study.RTReferencedSeriesSequence = Sequence([series])
        ref.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref])
    ds.StructureSetROISequence, ds.ROIContourSequence = Sequence(), Sequence()
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, frame
        ds.StructureSetROISequence.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ContourSequence = Sequence()
        for c in contours:
            item = Dataset()
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(c)
            item.ContourData = [f"{v:.4f}" for v in np.asarray(c, float).ravel()]
            rc.ContourSequence.append(item)
        ds.ROIContourSequence.append(rc)
    return _save(ds, path)


def square(cx, cy, z, half):
    """Closed square contour (4 points) centred on (cx, cy) at height z."""
    return np.array([[cx - half, cy - half, z], [cx + half, cy - half, z],
                     [cx + half, cy + half, z], [cx - half, cy + half, z]])


# ---------------------------------------------------------------------------------------------
# Round trips: what was written is what the readers return (values and exact geometry).

def test_ct_series_roundtrip_values_and_geometry(tmp_path):
    from COMPASSLib.io.ct import read_ct_series

    rng = np.random.default_rng(0)
    stored = rng.integers(0, 3000, size=(5, 6, 7)).astype(np.int16)
    files = write_series(tmp_path, stored, origin=(-10.0, 20.0, -30.0), spacing=(0.8, 0.9, 2.5),
                         slope=1.0, intercept=-1024.0)
    image = read_ct_series(files)
    assert image.GetSize() == (7, 6, 5)
    assert image.GetOrigin() == pytest.approx((-10.0, 20.0, -30.0))
    assert image.GetSpacing() == pytest.approx((0.8, 0.9, 2.5))
    assert image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), stored - 1024.0)
    assert image.GetMetaData("FrameOfReferenceUID") == FRAME


def test_ct_series_oblique_and_reversed_normal(tmp_path):
    """Sagittal-like orientation whose slice normal points to -x: slices must still be stacked
    in the normal's order and voxel (i,j,k) must land at origin + D @ (spacing * ijk)."""
    from COMPASSLib.io.ct import read_ct_series

    orientation = (0, 1, 0, 0, 0, -1)          # rows along +y, columns along -z -> normal = -x
    stored = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    files = write_series(tmp_path, stored, origin=(5.0, -2.0, 7.0), spacing=(1.5, 1.25, 3.0),
                         orientation=orientation)
    image = read_ct_series(files)
    d = np.array(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(d[:, 2], [-1, 0, 0], atol=1e-9)
    point = image.TransformIndexToPhysicalPoint((2, 3, 1))
    np.testing.assert_allclose(point, np.array([5.0, -2.0, 7.0]) + 2 * 1.5 * np.array([0, 1, 0])
                               + 3 * 1.25 * np.array([0, 0, -1]) + 1 * 3.0 * np.array([-1, 0, 0]), atol=1e-6)
    assert sitk.GetArrayFromImage(image)[1, 3, 2] == stored[1, 3, 2]


@pytest.mark.parametrize("absolute", [False, True])
def test_rtdose_roundtrip_relative_and_absolute_offsets(tmp_path, absolute):
    from COMPASSLib.io.rtdose import read_rtdose

    dose = np.linspace(0, 2.5, 4 * 5 * 6).reshape(4, 5, 6)
    path = write_rtdose(tmp_path / "rd.dcm", dose, origin=(1.0, 2.0, -15.0), absolute_offsets=absolute)
    image = read_rtdose(path)
    assert image.GetOrigin() == pytest.approx((1.0, 2.0, -15.0))
    assert image.GetSpacing() == pytest.approx((2.0, 2.0, 3.0))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), dose, atol=1e-4)
    assert image.GetMetaData("DoseUnits") == "GY"
    assert image.GetMetaData("DoseType") == "PHYSICAL"
    assert image.GetMetaData("DoseSummationType") == "FRACTION"
    assert image.GetMetaData("FrameOfReferenceUID") == FRAME


def test_rtdose_cgy_converted_to_gy(tmp_path):
    from COMPASSLib.io.rtdose import read_rtdose

    dose_cgy = np.full((2, 3, 3), 180.0)
    image = read_rtdose(write_rtdose(tmp_path / "rd.dcm", dose_cgy, units="CGY", scaling=0.01))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), 1.8, atol=1e-6)
    assert image.GetMetaData("SourceDoseUnits") == "CGY"
