"""RTDOSE -> float32 image in Gy with exact LPS geometry.

- DoseGridScaling is required and must be a finite positive number (the stored integers mean nothing
  without it); a negative dose (signed pixels, a dose difference) is a DoseError.
- Header fields are checked as they are read (NumberOfFrames, Rows, Columns whole numbers >= 1, pixel data
  of that many values, orthonormal orientation, positive spacing, finite positions): an InputError or
  GeometryError naming the file and the tag. A grid too large for the memory limit is refused before
  the pixel data is decoded (COMPASSLib.memory).
- Multi-frame grids: GridFrameOffsetVector gives each frame's offset along the slice normal, either
  relative to ImagePositionPatient (first element 0) or absolute (first element equals the image
  position's coordinate along the normal), as DICOM PS3.3 C.8.8.3.2 allows; frames are sorted and
  must be evenly spaced.
- DoseUnits GY kept, CGY converted to Gy, RELATIVE refused unless `allow_relative=True` (then the
  values are returned unscaled to Gy and DoseUnits says RELATIVE).
- Metadata on the image: DoseUnits (units of the returned values), SourceDoseUnits, DoseType,
  DoseSummationType, FrameOfReferenceUID, SOPInstanceUID, StudyInstanceUID, PatientID.
"""
from __future__ import annotations

import numpy as np

from COMPASSLib import memory
from COMPASSLib.errors import DoseError, GeometryError, InputError
from COMPASSLib.io.dicom_series import (check_modality, check_spacing, check_uniform_spacing, dicom_number,
                                        dicom_numbers, direction_from_orientation, element_value, make_image,
                                        read_dataset)


def read_rtdose(path, allow_relative=False, patient=None, fraction=None):
    """Read one RTDOSE file -> `SimpleITK.Image` float32 in Gy (see module docstring)."""
    ds = read_dataset(path, patient=patient, fraction=fraction)
    where = dict(file=path, patient=patient, fraction=fraction)
    check_modality(ds, "RTDOSE", path, patient, fraction)
    if "PixelData" not in ds:
        raise InputError("RTDOSE without a dose grid (no PixelData; DVH-only dose object?)", **where)
    units = str(element_value(ds, "DoseUnits", default="", **_where(where)) or "").strip().upper()
    to_gy = _to_gy(ds, units, allow_relative, where)
    direction, ipp, ps = _plane_geometry(ds, where)
    frames = dicom_number(ds, "NumberOfFrames", default=1, integer=True, positive=True, **_where(where))
    rows, columns = (dicom_number(ds, k, integer=True, positive=True, **_where(where)) for k in ("Rows", "Columns"))
    memory.check(f"RTDOSE grid of {columns} x {rows} x {frames} voxels (Columns x Rows x NumberOfFrames)",
                 memory.grid_bytes((frames, rows, columns), 24), error=InputError,
                 hint="check Rows (0028,0010), Columns (0028,0011) and NumberOfFrames (0028,0008)", **where)
    try:
        pixels = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for undecodable data
        raise InputError(f"cannot decode RTDOSE pixel data: {e}", **where) from None
    if pixels.size != frames * rows * columns:
        raise InputError(f"RTDOSE pixel data holds {pixels.size} values, NumberOfFrames x Rows x Columns = "
                         f"{frames} x {rows} x {columns}", **where)
    pixels = pixels.reshape((frames, rows, columns))
    pixels, origin, step = _frames(ds, pixels, direction, ipp, path, where)
    dose = (pixels.astype(np.float64) * to_gy).astype(np.float32)
    if not np.isfinite(dose).all():
        raise DoseError(f"RTDOSE values are not finite in float32 (DoseGridScaling (3004,000E) {to_gy:g} Gy)",
                        **where)
    if dose.size and dose.min() < 0:
        raise DoseError(f"RTDOSE holds negative dose ({dose.min():.6g} Gy; DoseGridScaling or "
                        "PixelRepresentation wrong, or a dose difference)", **where)
    metadata = {"DoseUnits": "RELATIVE" if units == "RELATIVE" else "GY",
                "SourceDoseUnits": units,
                "DoseType": str(ds.get("DoseType", "")),
                "DoseSummationType": str(ds.get("DoseSummationType", "")),
                "FrameOfReferenceUID": str(ds.get("FrameOfReferenceUID", "")),
                "SOPInstanceUID": str(ds.get("SOPInstanceUID", "")),
                "StudyInstanceUID": str(ds.get("StudyInstanceUID", "")),
                "PatientID": str(ds.get("PatientID", "")),
                "Modality": "RTDOSE"}
    return make_image(dose, origin, (ps[1], ps[0], step), direction, metadata)


def _where(where) -> dict:
    """`where` (file, patient, fraction) as the path/patient/fraction arguments of the dicom_series helpers."""
    return {"path": where["file"], "patient": where["patient"], "fraction": where["fraction"]}


def _to_gy(ds, units, allow_relative, where) -> float:
    """Gy per stored value: DoseGridScaling (a finite positive number) x the DoseUnits factor."""
    scaling = element_value(ds, "DoseGridScaling", **_where(where))
    if scaling in (None, ""):
        raise DoseError("RTDOSE lacks DoseGridScaling (3004,000E): stored values cannot be turned into dose",
                        **where)
    try:
        scaling = dicom_number(ds, "DoseGridScaling", positive=True, **_where(where))
    except InputError as e:
        raise DoseError(f"RTDOSE {e.message}: stored values cannot be turned into dose", **where) from None
    if units == "GY":
        return scaling
    if units == "CGY":
        return scaling * 0.01
    if units == "RELATIVE" and allow_relative:
        return scaling
    if units == "RELATIVE":
        raise DoseError("RTDOSE DoseUnits is RELATIVE (no absolute dose); pass allow_relative=True to read it",
                        **where)
    raise DoseError(f"RTDOSE DoseUnits {units or '(missing)'} not understood (GY or CGY)", **where)


def _plane_geometry(ds, where):
    """(direction, ImagePositionPatient, PixelSpacing) of the dose grid, each checked (GeometryError)."""
    try:
        iop = dicom_numbers(ds, "ImageOrientationPatient", 6, **_where(where))
        ipp = dicom_numbers(ds, "ImagePositionPatient", 3, **_where(where))
        ps = dicom_numbers(ds, "PixelSpacing", 2, **_where(where))
    except InputError as e:
        raise GeometryError(f"RTDOSE lacks ImageOrientationPatient/ImagePositionPatient/PixelSpacing: {e.message}",
                            **where) from None
    check_spacing(ps, "RTDOSE PixelSpacing (0028,0030)", **_where(where))
    direction = direction_from_orientation(iop)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise GeometryError("RTDOSE ImageOrientationPatient (0020,0037) is not two orthogonal unit vectors", **where)
    return direction, ipp, ps


def _frames(ds, pixels, direction, ipp, path, where):
    """(frames sorted along the slice normal, origin, frame spacing) from GridFrameOffsetVector."""
    frames = pixels.shape[0]
    if frames == 1:
        step = dicom_number(ds, "SliceThickness", default=1.0, positive=True, **_where(where))
        check_spacing(step, "RTDOSE SliceThickness (0018,0050)", **_where(where))
        return pixels, ipp, step
    offsets = dicom_numbers(ds, "GridFrameOffsetVector", None, required=False, **_where(where))
    if offsets is None or len(offsets) != frames:
        raise GeometryError(f"RTDOSE GridFrameOffsetVector has {0 if offsets is None else len(offsets)} "
                            f"values for {frames} frames", **where)
    along = float(ipp @ direction[:, 2])
    if offsets[0] != 0.0:
        if abs(offsets[0] - along) > 1e-3:
            raise GeometryError(f"RTDOSE GridFrameOffsetVector starts at {offsets[0]}, neither 0 (relative) "
                                f"nor the image position {along:.3f} (absolute)", **where)
        offsets = offsets - along  # absolute -> relative to ImagePositionPatient
    order = np.argsort(offsets, kind="stable")
    offsets, pixels = offsets[order], pixels[order]
    step = check_uniform_spacing(offsets, [f"frame {i + 1}" for i in order], [path] * frames,
                                 what="dose frame", patient=where["patient"], fraction=where["fraction"])
    check_spacing(step, "RTDOSE frame spacing (GridFrameOffsetVector)", **_where(where))
    return pixels, ipp + offsets[0] * direction[:, 2], step
