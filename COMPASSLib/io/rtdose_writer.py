"""Write a dose, BED or EQD2 image (SimpleITK, Gy, LPS) as a DICOM RTDOSE that planning systems,
pydicom, SimpleITK/GDCM and Slicer (SlicerRT's DICOM RT plugin) import.

- One multi-frame object: frames along the slice normal, GridFrameOffsetVector relative to the first
  frame's ImagePositionPatient (first element 0, the form every reader accepts), FrameIncrementPointer
  pointing at it.
- 32-bit unsigned integers with DoseGridScaling = max / (2^32 - 1), rounded UP to the 10 significant
  digits a DS can hold, so the largest dose still fits and every value is stored to within
  DoseGridScaling / 2.
- DoseUnits GY; DoseType PHYSICAL for physical dose, EFFECTIVE for BED/EQD2, whose quantity and
  alpha/beta are spelled out in SeriesDescription and DoseComment (DICOM has no tag for them).
- With a template RTDOSE (the plan's dose), patient, study, frame of reference and the referenced
  RTPLAN are copied from it, so the new object sits beside the plan it came from. Without one the
  object gets fresh study / frame-of-reference UIDs and no ReferencedRTPlanSequence (which DICOM asks
  for with DoseSummationType PLAN): give a template when the file must go back to a planning system.
- UIDs are derived from the content (pydicom's generate_uid with entropy sources): writing the same
  image with the same settings twice gives the same file.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from COMPASSLib.atomic import atomic_path
from COMPASSLib.errors import DoseError, GeometryError

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
QUANTITIES = {"DOSE": "PHYSICAL", "BED": "EFFECTIVE", "EQD2": "EFFECTIVE"}
SUMMATION_TYPES = ("PLAN", "MULTI_PLAN", "FRACTION", "BEAM", "BRACHY", "FRACTION_SESSION", "BEAM_SESSION",
                   "BRACHY_SESSION", "CONTROL_POINT", "RECORD")
_UINT32_MAX = 2 ** 32 - 1
# Copied from a template RTDOSE: who, which study, which frame of reference and plan.
_TEMPLATE_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                      "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                      "FrameOfReferenceUID", "PositionReferenceIndicator", "ReferencedRTPlanSequence")


def dose_grid_scaling(max_gy: float) -> float:
    """Gy per stored unit: max / (2^32 - 1), rounded up to 10 significant digits (fits a 16-char DS)."""
    if max_gy <= 0:
        return 1e-6  # an all-zero grid: any scaling stores it exactly
    scaling = float(f"{max_gy / _UINT32_MAX * (1 + 2e-9):.9e}")
    assert max_gy / scaling <= _UINT32_MAX
    return scaling


def describe(quantity: str, alpha_beta_gy=None) -> str:
    """'BED (Gy), alpha/beta 3 Gy' -- the text stored in SeriesDescription and DoseComment."""
    quantity = quantity.upper()
    if quantity == "DOSE":
        return "Physical dose (Gy)"
    if alpha_beta_gy is None:
        raise DoseError(f"{quantity} RTDOSE needs the alpha/beta that made it")
    ab = f"{float(alpha_beta_gy):g} Gy" if isinstance(alpha_beta_gy, (int, float, np.floating)) else str(alpha_beta_gy)
    return f"{quantity} (Gy), alpha/beta {ab}"


def _geometry(image):
    if image.GetDimension() != 3:
        raise GeometryError(f"RTDOSE needs a 3-D image (got {image.GetDimension()}-D)")
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-5):
        raise GeometryError("RTDOSE needs an orthonormal image direction")
    row, col = direction[:, 0], direction[:, 1]
    normal = np.cross(row, col)
    # frames follow the image's third axis, which may run against the row x column normal
    sign = float(np.sign(direction[:, 2] @ normal))
    return direction, row, col, sign


def _stored_values(image, path):
    """(uint32 stored values (frames, rows, columns), DoseGridScaling) of a float Gy image."""
    import SimpleITK as sitk

    values = sitk.GetArrayFromImage(image).astype(np.float64)  # (frames, rows, columns)
    if not np.all(np.isfinite(values)):
        raise DoseError("dose image holds NaN or infinite values", file=path)
    if values.min() < -1e-4:
        raise DoseError(f"dose image is negative (min {values.min():.6g} Gy); RTDOSE stores unsigned dose", file=path)
    values = np.maximum(values, 0.0)
    scaling = dose_grid_scaling(float(values.max()))
    return np.rint(values / scaling).astype(np.uint32), scaling


def _content_seed(image, stored, text, summation_type, template) -> str:
    """Hex digest of everything the object holds: the entropy of its UIDs (same content, same UIDs)."""
    digest = hashlib.sha256(stored.tobytes())
    digest.update(repr((image.GetOrigin(), image.GetSpacing(), image.GetDirection(), text, summation_type,
                        str(template.get("SOPInstanceUID", "")) if template is not None else "")).encode())
    return digest.hexdigest()


def _identity(seed, text, template):
    """Dataset with the SOP, series, patient, study and frame-of-reference attributes (the template's
    where it has them)."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RT_DOSE_STORAGE
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed, "sop"])
    ds.Modality = "RTDOSE"
    ds.Manufacturer = "COMPASS"
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SeriesDescription = f"COMPASS {text}"[:64]
    # Type 2 attributes: present, empty unless the template fills them
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "StudyID", "AccessionNumber", "ReferringPhysicianName", "PositionReferenceIndicator",
                    "OperatorsName", "ContentDate", "ContentTime"):
        setattr(ds, keyword, "")
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[seed, "for"])
    if template is not None:
        for keyword in _TEMPLATE_KEYWORDS:
            if keyword in template:
                setattr(ds, keyword, template[keyword].value)
    return ds


def _set_pixel_geometry(ds, image, stored, row, col, sign):
    """Image pixel and plane attributes: 32-bit unsigned frames, spacing, position, orientation and the
    frame offsets along the slice normal."""
    import pydicom

    spacing = image.GetSpacing()
    frames, rows, columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.Rows, ds.Columns = rows, columns
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.PixelSpacing = [f"{spacing[1]:.10g}", f"{spacing[0]:.10g}"]  # row spacing (y), column spacing (x)
    ds.SliceThickness = f"{spacing[2]:.10g}"
    ds.ImagePositionPatient = [f"{v:.10g}" for v in image.GetOrigin()]
    ds.ImageOrientationPatient = [f"{v:.10g}" for v in (*row, *col)]
    ds.GridFrameOffsetVector = [f"{sign * k * spacing[2]:.10g}" for k in range(frames)]


def _set_dose(ds, quantity, summation_type, text, comment, scaling, stored):
    """RT Dose module: units, type, summation, comment, scaling and the pixel data."""
    ds.DoseUnits = "GY"
    ds.DoseType = QUANTITIES[quantity]
    ds.DoseSummationType = summation_type
    ds.DoseComment = (comment or text)[:64]
    ds.DoseGridScaling = f"{scaling:.9e}"
    ds.PixelData = stored.tobytes()


def _save(ds, path) -> Path:
    """File meta (Explicit VR Little Endian) and an atomic write."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    path = Path(path)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def write_rtdose(image, path, quantity: str = "DOSE", alpha_beta_gy=None, template=None,
                 summation_type: str = "PLAN", description: str | None = None, comment: str | None = None) -> Path:
    """Write `image` (float Gy) as RTDOSE at `path`, atomically.

    quantity: "DOSE" (physical), "BED" or "EQD2" (EFFECTIVE; `alpha_beta_gy` required: a number or a
    short text such as "organ map"). template: a pydicom Dataset or path of the RTDOSE whose patient,
    study, frame of reference and referenced plan the new object shares."""
    import pydicom
    from pydicom.dataset import Dataset

    quantity = quantity.upper()
    if quantity not in QUANTITIES:
        raise DoseError(f"unknown RTDOSE quantity {quantity!r} (one of {', '.join(QUANTITIES)})", file=path)
    if summation_type not in SUMMATION_TYPES:
        raise DoseError(f"unknown DoseSummationType {summation_type!r}", file=path)
    text = describe(quantity, alpha_beta_gy)
    direction, row, col, sign = _geometry(image)
    stored, scaling = _stored_values(image, path)

    if template is not None and not isinstance(template, Dataset):
        template = pydicom.dcmread(str(template), stop_before_pixels=True)

    ds = _identity(_content_seed(image, stored, text, summation_type, template), text, template)
    _set_pixel_geometry(ds, image, stored, row, col, sign)
    _set_dose(ds, quantity, summation_type, text, comment, scaling, stored)
    return _save(ds, path)
