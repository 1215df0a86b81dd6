"""Write the synthetic images as DICOM: CT and PET series (one file per slice), RTDOSE (multi-frame)
and RTSTRUCT. Every UID, date and time comes from the cohort seed, so the same seed gives the same bytes."""
from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from COMPASSLib import __version__
from COMPASSLib.atomic import write_bytes
from COMPASSLib.synth.anatomy import ROI_NAMES, ROI_TYPES
from COMPASSLib.synth.contours import mask_contours
from COMPASSLib.synth.grid import Grid
from COMPASSLib.synth.pet import F18_HALF_LIFE_S, PetParams

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
RTDOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RTPLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
CONTOUR_DATA = pydicom.tag.Tag("ContourData")
STUDY_COMPONENT = "1.2.840.10008.3.1.2.3.1"   # Detached Study Management, as RTSTRUCTs reference studies

ROI_COLOURS = {"BODY": (0, 128, 0), "Lung_L": (0, 160, 255), "Lung_R": (0, 120, 220), "Heart": (220, 40, 40),
               "Esophagus": (240, 180, 40), "SpinalCord": (255, 255, 0), "GTV": (255, 0, 255)}


UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/COMPASS/synthetic-cohort")


def uid(seed: int, *parts) -> str:
    """A UID derived from the seed and what it names: 2.25.<name-based UUID> (ISO/IEC 9834-8, DICOM
    PS3.5 B.2), stable across runs and machines. (pydicom's generate_uid(prefix=None) ignores its
    entropy sources and returns a random UUID, so it cannot be used for reproducible UIDs.)"""
    name = "|".join(map(str, (seed, *parts)))
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}"


@dataclass
class StudyContext:
    """What all files of one scan session (planning or a fraction) share."""
    seed: int
    patient_id: str
    patient_name: str
    frame_uid: str
    study_uid: str
    study_date: str      # YYYYMMDD
    study_time: str      # HHMMSS
    study_id: str
    description: str


def _base(ctx: StudyContext, sop_class: str, sop_uid: str, modality: str, series_uid: str,
          series_number: int, series_description: str, series_time: str | None = None) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = uid(0, "implementation")
    meta.ImplementationVersionName = "COMPASS_SYNTH"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = ctx.study_date, series_time or ctx.study_time
    ds.StudyDate, ds.StudyTime = ctx.study_date, ctx.study_time
    ds.SeriesDate, ds.SeriesTime = ctx.study_date, series_time or ctx.study_time
    ds.ContentDate, ds.ContentTime = ctx.study_date, series_time or ctx.study_time
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "COMPASS synthetic cohort"
    ds.ManufacturerModelName = "compass synth"
    ds.SoftwareVersions = __version__
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = ctx.description
    ds.SeriesDescription = series_description
    ds.PatientName = ctx.patient_name
    ds.PatientID = ctx.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.StudyInstanceUID = ctx.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = ctx.study_id
    ds.SeriesNumber = series_number
    ds.FrameOfReferenceUID = ctx.frame_uid
    ds.PositionReferenceIndicator = ""
    if modality in ("CT", "PT"):
        ds.PatientPosition = "HFS"     # head first supine (General Series, required for CT)
    return ds


def _save(ds: Dataset, path) -> None:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    write_bytes(path, buf.getvalue())


def _image_plane(ds: Dataset, grid: Grid, k: int) -> None:
    x0, y0, _ = grid.origin_mm
    z = grid.axes()[2][k]
    ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [_ds(grid.spacing_mm[1]), _ds(grid.spacing_mm[0])]   # row spacing (y), column (x)
    ds.SliceThickness = _ds(grid.spacing_mm[2])
    ds.SliceLocation = _ds(z)
    ds.Rows, ds.Columns = grid.size[1], grid.size[0]


def _ds(v: float) -> str:
    """Decimal string without float noise (DICOM DS allows 16 characters)."""
    s = f"{float(v):.4f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _raw_ds(tag, values) -> RawDataElement:
    """A multi-valued DS element from its encoded bytes: contours hold ~10^5 numbers per file and
    pydicom's per-value validation would dominate the writing time."""
    data = "\\".join(_ds(v) for v in values).encode("ascii")
    if len(data) % 2:
        data += b" "    # DICOM values have even length; DS pads with a space
    return RawDataElement(tag, "DS", len(data), data, 0, False, True)


def _pixels(ds: Dataset, array: np.ndarray, signed: bool, bits: int = 16) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(array).tobytes()


def _slice(ds: Dataset, sop: str, grid: Grid, k: int) -> None:
    """Make the series template `ds` slice k: the per-slice attributes only (a series is written by
    updating one dataset, which is several times faster than building one per file)."""
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.InstanceNumber = k + 1
    z = _ds(grid.axes()[2][k])
    ds.ImagePositionPatient = [_ds(grid.origin_mm[0]), _ds(grid.origin_mm[1]), z]
    ds.SliceLocation = z


def write_ct_series(folder, hu: np.ndarray, grid: Grid, ctx: StudyContext, series_uid: str, tag: str) -> list:
    """One CT file per slice (uint16 with RescaleIntercept -1024); returns [(path, SOPInstanceUID)]."""
    stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)
    ds = _base(ctx, CT_STORAGE, uid(ctx.seed, tag, "CT", 0), "CT", series_uid, 1, f"{ctx.description} CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = "120"
    ds.AcquisitionNumber = 1
    _image_plane(ds, grid, 0)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    out = []
    for k in range(grid.shape[0]):
        sop = uid(ctx.seed, tag, "CT", k)
        _slice(ds, sop, grid, k)
        _pixels(ds, stored[k], signed=False)
        path = folder / f"CT{k + 1:04d}.dcm"
        _save(ds, path)
        out.append((path, sop))
    return out


def write_pet_series(folder, suv: np.ndarray, grid: Grid, ctx: StudyContext, pet: PetParams,
                     series_uid: str, tag: str, scan_time: str, injection_time: str) -> list:
    """One PET file per slice, activity in Bq/ml (Units BQML, decay-corrected to the series start) with
    per-slice RescaleSlope, and what SUV body-weight needs: weight, injected activity, injection time."""
    bqml = suv.astype(np.float64) * pet.bqml_per_suv()
    ds = _base(ctx, PET_STORAGE, uid(ctx.seed, tag, "PT", 0), "PT", series_uid, 2,
               f"{ctx.description} PET FDG", scan_time)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.AcquisitionDate, ds.AcquisitionTime = ctx.study_date, scan_time
    ds.NumberOfSlices = grid.shape[0]
    ds.PatientWeight = _ds(pet.weight_kg)
    ds.SeriesType = ["STATIC", "IMAGE"]
    ds.Units = "BQML"
    ds.CountsSource = "EMISSION"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
    ds.RandomsCorrectionMethod = "DLYD"
    ds.AttenuationCorrectionMethod = "CT"
    ds.ReconstructionMethod = "OSEM"
    ds.FrameReferenceTime = "0"
    ds.ActualFrameDuration = 180000
    ds.DecayFactor = "1"
    ds.DoseCalibrationFactor = "1"
    rp = Dataset()
    rp.Radiopharmaceutical = "Fludeoxyglucose"
    rp.RadiopharmaceuticalStartTime = injection_time
    rp.RadiopharmaceuticalStartDateTime = ctx.study_date + injection_time
    rp.RadionuclideTotalDose = _ds(pet.injected_bq)
    rp.RadionuclideHalfLife = _ds(F18_HALF_LIFE_S)
    rp.RadionuclidePositronFraction = "0.9673"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-111A1", "SRT", "^18^Fluorine"
    rp.RadionuclideCodeSequence = Sequence([code])
    ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
    _image_plane(ds, grid, 0)
    ds.RescaleIntercept = "0"
    out = []
    for k in range(grid.shape[0]):
        sop = uid(ctx.seed, tag, "PT", k)
        _slice(ds, sop, grid, k)
        ds.ImageIndex = k + 1
        # int16 per slice, the slope chosen so the slice maximum uses the full range (as scanners do).
        top = float(bqml[k].max())
        ds.RescaleSlope = f"{top / 32767.0:.10g}" if top > 0 else "1"
        _pixels(ds, np.rint(bqml[k] / float(ds.RescaleSlope)).astype(np.int16), signed=True)
        path = folder / f"PT{k + 1:04d}.dcm"
        _save(ds, path)
        out.append((path, sop))
    return out


def write_rtdose(path, dose_gy: np.ndarray, grid: Grid, ctx: StudyContext, series_uid: str, tag: str,
                 fraction: int, plan_uid: str) -> str:
    """Multi-frame RTDOSE (uint32 with DoseGridScaling) of one fraction's delivered physical dose."""
    sop = uid(ctx.seed, tag, "RD")
    ds = _base(ctx, RTDOSE_STORAGE, sop, "RTDOSE", series_uid, 3, f"Delivered dose fraction {fraction}")
    ds.InstanceNumber = fraction
    # The RT fraction number as RT treatment records state it (a standard extended attribute here),
    # so `compass scan` can order fractions without relying on dates.
    ds.CurrentFractionNumber = fraction
    _image_plane(ds, grid, 0)
    del ds.SliceLocation
    ds.NumberOfFrames = grid.shape[0]
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.GridFrameOffsetVector = [_ds(k * grid.spacing_mm[2]) for k in range(grid.shape[0])]
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "FRACTION"
    ds.DoseComment = f"fraction {fraction} as delivered (setup error and GTV change included)"
    top = float(dose_gy.max())
    scaling = top / 4.0e9 if top > 0 else 1.0
    ds.DoseGridScaling = f"{scaling:.10g}"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = RTPLAN_STORAGE, plan_uid
    group = Dataset()
    group.ReferencedFractionGroupNumber = 1
    ref.ReferencedFractionGroupSequence = Sequence([group])
    ds.ReferencedRTPlanSequence = Sequence([ref])
    _pixels(ds, np.rint(dose_gy / float(ds.DoseGridScaling)).astype(np.uint32), signed=False, bits=32)
    _save(ds, path)
    return sop


def write_rtstruct(path, masks: dict, grid: Grid, ctx: StudyContext, series_uid: str, tag: str,
                   ct_series_uid: str, ct_files: list) -> str:
    """RTSTRUCT with one ROI per mask (CLOSED_PLANAR contours on the CT slices they lie on)."""
    sop = uid(ctx.seed, tag, "RS")
    ds = _base(ctx, RTSTRUCT_STORAGE, sop, "RTSTRUCT", series_uid, 4, f"{ctx.description} structures")
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "SYNTH"
    ds.StructureSetName = ctx.description
    ds.StructureSetDate, ds.StructureSetTime = ctx.study_date, ctx.study_time

    def image_ref(sop_uid):
        r = Dataset()
        r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = CT_STORAGE, sop_uid
        return r

    series = Dataset()
    series.SeriesInstanceUID = ct_series_uid
    series.ContourImageSequence = Sequence([image_ref(s) for _, s in ct_files])
    study = Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = STUDY_COMPONENT, ctx.study_uid
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ctx.frame_uid
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])

    rois, contours, observations = [], [], []
    for number, name in enumerate(ROI_NAMES, start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, ctx.frame_uid, name
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        rois.append(roi)
        items = []
        for k, pts in mask_contours(masks[name], grid):
            c = Dataset()
            c.ContourImageSequence = Sequence([image_ref(ct_files[k][1])])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c[CONTOUR_DATA] = _raw_ds(CONTOUR_DATA, pts.ravel())
            # Declare the item already in the file's encoding, or pydicom parses the raw value back.
            c.set_original_encoding(False, True, c._character_set)
            items.append(c)
        rc = Dataset()
        rc.ROIDisplayColor = list(ROI_COLOURS[name])
        rc.ReferencedROINumber = number
        rc.ContourSequence = Sequence(items)
        contours.append(rc)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.ROIObservationLabel = name
        obs.RTROIInterpretedType = ROI_TYPES.get(name, "ORGAN")
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    _save(ds, path)
    return sop
