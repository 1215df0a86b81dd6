"""RTDOSE -> float32 image in Gy with exact LPS geometry.

- DoseGridScaling is required (the stored integers mean nothing without it).
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

from COMPASSLib.errors import DoseError, GeometryError, InputError
from COMPASSLib.io.dicom_series import (check_modality, check_uniform_spacing, direction_from_orientation,
                                        make_image, read_dataset)


def read_rtdose(path, allow_relative=False, patient=None, fraction=None):
    """Read one RTDOSE file -> `SimpleITK.Image` float32 in Gy (see module docstring)."""
    ds = read_dataset(path, patient=patient, fraction=fraction)
    where = dict(file=path, patient=patient, fraction=fraction)
    check_modality(ds, "RTDOSE", path, patient, fraction)
    if "PixelData" not in ds:
        raise InputError("RTDOSE without a dose grid (no PixelData; DVH-only dose object?)", **where)
    scaling = ds.get("DoseGridScaling")
    if scaling in (None, ""):
        raise DoseError("RTDOSE lacks DoseGridScaling (3004,000E): stored values cannot be turned into dose",
                        **where)
    units = str(ds.get("DoseUnits", "")).strip().upper()
    if units == "GY":
        to_gy = 1.0
    elif units == "CGY":
        to_gy = 0.01
    elif units == "RELATIVE" and allow_relative:
        to_gy = 1.0
    elif units == "RELATIVE":
        raise DoseError("RTDOSE DoseUnits is RELATIVE (no absolute dose); pass allow_relative=True to read it",
                        **where)
    else:
        raise DoseError(f"RTDOSE DoseUnits {units or '(missing)'} not understood (GY or CGY)", **where)

    try:
        iop = [float(v) for v in ds.ImageOrientationPatient]
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        ps = [float(v) for v in ds.PixelSpacing]
    except (AttributeError, ValueError, TypeError):
        raise GeometryError("RTDOSE lacks ImageOrientationPatient/ImagePositionPatient/PixelSpacing", **where) from None
    direction = direction_from_orientation(iop)
    try:
        pixels = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for undecodable data
        raise InputError(f"cannot decode RTDOSE pixel data: {e}", **where) from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = pixels.reshape((frames, int(ds.Rows), int(ds.Columns)))

    if frames > 1:
        offsets = ds.get("GridFrameOffsetVector")
        if offsets is None or len(offsets) != frames:
            raise GeometryError(f"RTDOSE GridFrameOffsetVector has {0 if offsets is None else len(offsets)} "
                                f"values for {frames} frames", **where)
        offsets = np.array([float(v) for v in offsets])
        along = float(ipp @ direction[:, 2])
        if offsets[0] != 0.0:
            if abs(offsets[0] - along) > 1e-3:
                raise GeometryError(f"RTDOSE GridFrameOffsetVector starts at {offsets[0]}, neither 0 (relative) "
                                    f"nor the image position {along:.3f} (absolute)", **where)
            offsets = offsets - along  # absolute -> relative to ImagePositionPatient
        order = np.argsort(offsets, kind="stable")
        offsets, pixels = offsets[order], pixels[order]
        step = check_uniform_spacing(offsets, [f"frame {i + 1}" for i in order], [path] * frames,
                                     what="dose frame", patient=patient, fraction=fraction)
        origin = ipp + offsets[0] * direction[:, 2]
    else:
        step = float(ds.get("SliceThickness") or 1.0)
        origin = ipp

    dose = pixels.astype(np.float64) * float(scaling) * to_gy
    metadata = {"DoseUnits": "RELATIVE" if units == "RELATIVE" else "GY",
                "SourceDoseUnits": units,
                "DoseType": str(ds.get("DoseType", "")),
                "DoseSummationType": str(ds.get("DoseSummationType", "")),
                "FrameOfReferenceUID": str(ds.get("FrameOfReferenceUID", "")),
                "SOPInstanceUID": str(ds.get("SOPInstanceUID", "")),
                "StudyInstanceUID": str(ds.get("StudyInstanceUID", "")),
                "PatientID": str(ds.get("PatientID", "")),
                "Modality": "RTDOSE"}
    return make_image(dose.astype(np.float32), origin, (ps[1], ps[0], step), direction, metadata)
