"""NRRD / NIfTI / MetaImage volumes and labelmaps, and Slicer `.seg.nrrd` segmentations.

SimpleITK reads all of them into LPS (it converts NIfTI's RAS header itself), so images from here
share coordinates with the DICOM readers.

Mask names:
- Slicer `.seg.nrrd`: per segment `Segment{i}_Name`, `Segment{i}_LabelValue` and `Segment{i}_Layer`
  from the header. Several layers (overlapping segments) come as a 4D NRRD that SimpleITK reads as a
  vector image, one component per layer; each segment is `component == label value`. Files written
  before Slicer 4.11 lack Layer/LabelValue: there each segment is its own component, with value 1.
- Plain labelmaps: a Slicer colour table beside the file (`<stem>.ctbl` or `<stem>.txt`, lines
  `value name r g b a`) names the labels; otherwise masks are called `label_<value>`.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from COMPASSLib.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd")


def image_suffix(path) -> str | None:
    """The recognised image suffix of `path` (".nii.gz", ".seg.nrrd", ...), or None."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def _read(path, patient=None, fraction=None):
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError("image file not found", file=path, patient=patient, fraction=fraction)
    if image_suffix(path) is None:
        raise InputError(f"not an image file COMPASS reads ({', '.join(IMAGE_SUFFIXES)})",
                         file=path, patient=patient, fraction=fraction)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
        raise InputError(f"cannot read image: {first}", file=path, patient=patient, fraction=fraction) from None


def read_image(path, patient=None, fraction=None):
    """A scalar 3D image (CT, PET in SUV, dose in Gy, ...) -> `SimpleITK.Image` float32, LPS."""
    import SimpleITK as sitk

    image = _read(path, patient, fraction)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"expected a scalar image, file has {image.GetNumberOfComponentsPerPixel()} "
                         "components per voxel", file=path, patient=patient, fraction=fraction)
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D image, file is {image.GetDimension()}D",
                         file=path, patient=patient, fraction=fraction)
    out = sitk.Cast(image, sitk.sitkFloat32)
    for key in image.GetMetaDataKeys():
        out.SetMetaData(key, image.GetMetaData(key))
    return out


def _segments(image, path=None, patient=None, fraction=None):
    """[(name, label value, layer)] from Slicer segmentation header fields (InputError naming the file and
    the field when a label value or layer is not a whole number)."""
    keys = set(image.GetMetaDataKeys())
    found = []
    i = 0
    while f"Segment{i}_ID" in keys or f"Segment{i}_Name" in keys:
        get = lambda field, default=None: image.GetMetaData(f"Segment{i}_{field}") if f"Segment{i}_{field}" in keys else default  # noqa: E731,B023
        name = get("Name") or get("ID") or f"Segment_{i}"
        # Files from before Slicer 4.11 have no Layer/LabelValue: one segment per component, value 1.
        numbers = []
        for field, default in (("LabelValue", 1), ("Layer", i)):
            try:
                numbers.append(int(get(field, default)))
            except (TypeError, ValueError):
                raise InputError(f"segment {name!r}: header field Segment{i}_{field} {get(field)!r} is not a whole "
                                 "number", file=path, patient=patient, fraction=fraction) from None
        found.append((name, *numbers))
        i += 1
    return found


def _colour_table(path):
    """value -> name from a Slicer colour table beside `path`, or {}."""
    path = Path(path)
    stem = path.name[: -len(image_suffix(path) or "")] or path.stem
    for candidate in (path.with_name(stem + ".ctbl"), path.with_name(stem + ".txt")):
        if candidate.is_file():
            names = {}
            for line in candidate.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2 and not line.lstrip().startswith("#") and re.fullmatch(r"-?\d+", parts[0]):
                    names[int(parts[0])] = parts[1]
            return names
    return {}


def read_masks(path, patient=None, fraction=None) -> dict:
    """Labelmap or `.seg.nrrd` -> {name: `SimpleITK.Image` uint8 0/1} (see module docstring)."""
    import SimpleITK as sitk

    image = _read(path, patient, fraction)
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D labelmap/segmentation, file is {image.GetDimension()}D",
                         file=path, patient=patient, fraction=fraction)
    layers = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)          # (z, y, x) or (z, y, x, layers)
    if layers == 1:
        array = array[..., np.newaxis]
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise InputError("labelmap holds non-integer values (an image, not a labelmap?)",
                             file=path, patient=patient, fraction=fraction)
    array = array.astype(np.int64)

    segments = _segments(image, path, patient, fraction)
    if not segments:
        names = _colour_table(path)
        segments = [(names.get(int(v), f"label_{int(v)}"), int(v), layer)
                    for layer in range(array.shape[-1]) for v in np.unique(array[..., layer]) if v != 0]

    reference = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    reference.CopyInformation(image)
    masks = {}
    for name, value, layer in segments:
        if not 0 <= layer < array.shape[-1]:
            raise InputError(f"segment {name!r} is in layer {layer}, the file has {array.shape[-1]}",
                             file=path, patient=patient, fraction=fraction)
        mask = sitk.GetImageFromArray((array[..., layer] == value).astype(np.uint8))
        mask.CopyInformation(reference)
        if name in masks:
            log.warning("%s: segment name %r used twice; keeping the first", path, name)
            continue
        masks[name] = mask
    return masks
