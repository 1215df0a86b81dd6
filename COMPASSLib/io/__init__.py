"""Readers (and writers) that turn files into `SimpleITK.Image`s with exact LPS geometry.

One reader per kind: `ct.read_ct_series`, `pet.read_pet_series` (SUVbw), `rtdose.read_rtdose` (Gy),
`rtstruct.read_rtstruct` (masks on a reference grid), `images.read_image` / `images.read_masks`
(NRRD, NIfTI, MetaImage, Slicer .seg.nrrd). `read_volume` and `read_structures` pick the reader from
the files themselves (DICOM Modality, or the file extension).
"""
from __future__ import annotations

from COMPASSLib.errors import InputError


def _files(files):
    from COMPASSLib.io.dicom_series import as_file_list

    return as_file_list(files)


def _image_file(files):
    """The single NRRD/NIfTI file among `files`, or None when they are DICOM."""
    from COMPASSLib.io.images import image_suffix

    if len(files) == 1 and image_suffix(files[0]) is not None:
        return files[0]
    return None


def read_volume(files, modality: str, patient=None, fraction=None):
    """Read a CT ("ct", HU), PET ("pet", SUVbw) or dose ("dose", Gy) volume from a DICOM series /
    RTDOSE file(s), or from one NRRD/NIfTI file taken to be in those units already.
    Several RTDOSE files (e.g. one per beam) are summed on the first one's grid.
    A DICOM file of another modality is an InputError ("wrong modality")."""
    modality = modality.lower()
    if modality not in ("ct", "pet", "dose"):
        raise InputError(f"unknown volume modality {modality!r} (ct, pet or dose)", patient=patient, fraction=fraction)
    files = _files(files)
    if not files:
        raise InputError(f"no {modality} files given", patient=patient, fraction=fraction)
    single = _image_file(files)
    if single is not None:
        from COMPASSLib.io.images import read_image

        return read_image(single, patient=patient, fraction=fraction)
    if modality == "ct":
        from COMPASSLib.io.ct import read_ct_series

        return read_ct_series(files, patient=patient, fraction=fraction)
    if modality == "pet":
        from COMPASSLib.io.pet import read_pet_series

        return read_pet_series(files, patient=patient, fraction=fraction)
    return _read_dose_sum(files, patient, fraction)


def read_grid(files, modality: str, patient=None, fraction=None):
    """The grid of a volume (uint8 all-zero image with its exact geometry and FrameOfReferenceUID
    metadata), reading only the headers of a DICOM image series."""
    from COMPASSLib.geometry import reference_grid

    files = _files(files)
    if modality.lower() in ("ct", "pet") and files and _image_file(files) is None:
        from COMPASSLib.io.dicom_series import read_series

        image, _ = read_series(files, "CT" if modality.lower() == "ct" else "PT", patient=patient,
                               fraction=fraction, pixels=False)
        return image
    return reference_grid(read_volume(files[:1], modality, patient=patient, fraction=fraction))


def _read_dose_sum(files, patient, fraction):
    import os

    from COMPASSLib.geometry import resample_image
    from COMPASSLib.io.rtdose import read_rtdose

    seen = {}
    for f in files:   # one file twice would be summed twice: every dose doubled
        key = os.path.normcase(os.path.realpath(f))
        if key in seen:
            raise InputError(f"dose file given twice ({seen[key]} and {f}): several dose files of one fraction are "
                             "summed (one per beam)", file=f, patient=patient, fraction=fraction)
        seen[key] = f

    total = read_rtdose(files[0], patient=patient, fraction=fraction)
    for f in files[1:]:
        part = resample_image(read_rtdose(f, patient=patient, fraction=fraction), total)
        metadata = {k: total.GetMetaData(k) for k in total.GetMetaDataKeys()}
        total = total + part
        for k, v in metadata.items():
            total.SetMetaData(k, v)
    return total


def read_structures(files, reference, rois=None, patient=None, fraction=None, with_contours=False):
    """ROI/segment name -> uint8 mask on `reference`'s grid, from an RTSTRUCT file or a
    labelmap / .seg.nrrd file (resampled onto the reference when its grid differs). `with_contours`:
    (masks, contours) with the RTSTRUCT's contours per ROI from the same read, None for a labelmap."""
    files = _files(files)
    if len(files) != 1:
        raise InputError(f"expected one structure file, got {len(files)}", patient=patient, fraction=fraction)
    single = _image_file(files)
    if single is None:
        from COMPASSLib.errors import CompassError
        from COMPASSLib.io.rtstruct import read_rtstruct

        try:
            return read_rtstruct(files[0], reference, rois=rois, patient=patient, fraction=fraction,
                                 with_contours=with_contours)
        except CompassError as e:   # errors found deep in the contours know their item, not the file
            raise e.at(file=files[0], patient=patient, fraction=fraction) from None
    from COMPASSLib.geometry import resample_mask
    from COMPASSLib.io.images import read_masks

    masks = read_masks(single, patient=patient, fraction=fraction)
    if rois is not None:
        rois = [rois] if isinstance(rois, str) else list(rois)
        absent = [r for r in rois if r not in masks]
        if absent:
            raise InputError(f"segment(s) {absent} not in file (has: {', '.join(masks)})",
                             file=single, patient=patient, fraction=fraction)
        masks = {r: masks[r] for r in rois}
    out = {}
    for name, mask in masks.items():
        out[name] = resample_mask(mask, reference)
        if rois is not None and not _any(out[name]):
            raise InputError(f"segment {name!r} is empty on the reference grid", file=single,
                             patient=patient, fraction=fraction)
    return (out, None) if with_contours else out


def _any(image) -> bool:
    import SimpleITK as sitk

    return bool(sitk.GetArrayViewFromImage(image).any())


def dicom_modality(path) -> str | None:
    """The DICOM Modality of a file (header only), or None when it is not DICOM."""
    from COMPASSLib.io.dicom_series import read_dataset

    try:
        return str(read_dataset(path, stop_before_pixels=True).get("Modality", "")).upper() or None
    except InputError:
        return None
