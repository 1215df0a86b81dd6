"""Small pydicom writers for test inputs (CT/PET series, RTDOSE, RTSTRUCT), shared by the ingest, scan
and bad-input tests (test helper only; the round trips through the COMPASS readers are in
test_io_writers.py). The files they write are real DICOM (Part 10, explicit VR little endian) that
pydicom and SimpleITK read too."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
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


# SUVbw of a PET slice written with pet_info's defaults, 5000 Bq/ml acquired at 09:00:00.
# Hand computation (F-18, QIBA SUVbw):
#   injected 370 MBq at 08:00:00, series at 09:00:00 -> dt = 3600 s, T1/2 = 6586.2 s
#   decayed dose = 370e6 x 2^(-3600/6586.2) = 370e6 x 0.684633 = 253.314 MBq
#   SUV = 5000 Bq/ml x 75 000 g / 253.314e6 Bq = 1.48038
SUV_HAND = 1.48038


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
