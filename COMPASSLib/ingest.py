"""Load one fraction of one patient onto the patient's reference grid.

Reference grid ("ct", the default): the patient's planning CT, else the CT of the first fraction
that has one; every fraction of the patient then shares one grid, so voxelwise BED can be summed.
With reference="dose" the fraction's own dose grid is used (no dose interpolation at all; what
dicompyler and planning systems do for DVHs).

On that grid: CT in HU (linear), PET in SUVbw (linear, None when the fraction has no PET, with a
warning), dose in Gy (linear; several RTDOSE files of one fraction are summed; a missing dose is an
InputError), and organ masks from the fraction's RTSTRUCT/labelmap, else the planning one, renamed
to canonical organs with the manifest's `organs` map (then the synonym table for names the map does
not mention; ROIs that map to no organ are left out). Two ROIs that map to one organ are united.
Nothing is cached on disk.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from COMPASSLib.cohort import Cohort
from COMPASSLib.errors import CompassError, InputError

log = logging.getLogger(__name__)

AIR_HU = -1000.0   # CT outside its own field of view is taken to be air (PET and dose: 0)


@dataclass
class FractionImages:
    ct: object                     # sitk.Image float32 HU (the planning CT when the fraction has none)
    pet: object | None             # sitk.Image float32 SUVbw, or None
    dose: object                   # sitk.Image float32 Gy
    masks: dict = field(default_factory=dict)   # canonical organ -> sitk.Image uint8
    reference: object = None       # sitk.Image (uint8, empty) defining the grid, with FrameOfReferenceUID
    patient: str = ""
    fraction: int = 0


def _cohort(cohort) -> Cohort:
    return cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)


def _reference_ct_files(patient):
    if patient.planning is not None and patient.planning.ct:
        return patient.planning.ct, 0
    for f in patient.fractions:
        if f.ct:
            return f.ct, f.index
    raise InputError("patient has no CT (neither planning nor fraction CT) to define the reference grid",
                     patient=patient.id)


def _with_context(error: CompassError, files, patient, fraction):
    first = files[0] if files else None
    return error.at(file=first, patient=patient, fraction=fraction)


def _read_volume(cohort, files, modality, patient_id, index):
    from COMPASSLib.io import read_volume

    paths = cohort.paths(files)
    try:
        return read_volume(paths, modality, patient=patient_id, fraction=index)
    except CompassError as e:
        raise _with_context(e, paths, patient_id, index) from None


def _on_grid(image, grid, paths, patient_id, index, default=0.0):
    from COMPASSLib.geometry import resample_image

    try:
        return resample_image(image, grid, default=default)
    except CompassError as e:
        raise _with_context(e, paths, patient_id, index) from None


def load_patient_reference(cohort, patient_id, reference: str = "ct", fraction_index=None):
    """The reference grid of a patient: an all-zero uint8 image with the grid's exact geometry and
    FrameOfReferenceUID metadata (only DICOM headers are read for a CT series).
    reference="ct": the planning CT (else the first fraction CT); reference="dose": the dose grid of
    fraction `fraction_index`."""
    from COMPASSLib.geometry import reference_grid
    from COMPASSLib.io import read_grid

    cohort = _cohort(cohort)
    patient = cohort.patient(patient_id)
    if reference == "ct":
        files, index = _reference_ct_files(patient)
    elif reference == "dose":
        if fraction_index is None:
            raise InputError("reference='dose' needs the fraction whose dose grid to use", patient=patient.id)
        files, index = patient.fraction(fraction_index).dose, fraction_index
        if not files:
            raise InputError("fraction has no dose file", patient=patient.id, fraction=fraction_index)
    else:
        raise InputError(f"unknown reference {reference!r} (use 'ct' or 'dose')", patient=patient.id)
    paths = cohort.paths(files)
    try:
        grid = read_grid(paths, reference, patient=patient.id, fraction=index)
    except CompassError as e:
        raise _with_context(e, paths, patient.id, index) from None
    return reference_grid(grid, patient.frame_of_reference_uid)


def organ_for(roi_name, organs_map) -> str | None:
    """Canonical organ for an ROI name: the manifest's map first, then the synonym table."""
    from COMPASSLib.resources import canonical_organ

    if roi_name in organs_map:
        return organs_map[roi_name] or None
    return canonical_organ(roi_name)


def _structure_names(paths, patient_id, index):
    """ROI names in an RTSTRUCT, or None for labelmaps (their names are only known after reading)."""
    from COMPASSLib.io.images import image_suffix
    from COMPASSLib.io.rtstruct import list_rois

    if len(paths) == 1 and image_suffix(paths[0]) is None:
        return list_rois(paths[0], patient=patient_id, fraction=index)
    return None


def _load_masks(cohort, patient, frac, grid):
    import SimpleITK as sitk

    from COMPASSLib.io import read_structures

    files, index = frac.rtstruct, frac.index
    if not files and patient.planning is not None and patient.planning.rtstruct:
        files, index = patient.planning.rtstruct, 0
    if not files:
        log.warning("patient %s fraction %s: no structures (RTSTRUCT/labelmap); no organ masks",
                    patient.id, frac.index)
        return {}
    paths = cohort.paths(files)
    try:
        names = _structure_names(paths, patient.id, frac.index)
        wanted = None if names is None else [n for n in names if organ_for(n, patient.organs)]
        if wanted == []:
            log.warning("patient %s fraction %s: no ROI in %s maps to a known organ", patient.id, frac.index, paths[0])
            return {}
        rois = read_structures(paths, grid, rois=wanted, patient=patient.id, fraction=frac.index)
    except CompassError as e:
        raise _with_context(e, paths, patient.id, frac.index) from None
    masks = {}
    for roi, mask in rois.items():
        organ = organ_for(roi, patient.organs)
        if organ is None:
            continue
        masks[organ] = sitk.Or(masks[organ], mask) if organ in masks else mask
    log.debug("patient %s fraction %s: masks %s from %s (fraction %s)", patient.id, frac.index,
              sorted(masks), paths[0], index)
    return masks


def load_fraction(cohort, patient_id, fraction_index, reference: str = "ct") -> FractionImages:
    """CT, PET, dose and organ masks of one fraction on the patient's reference grid (see module doc)."""
    cohort = _cohort(cohort)
    patient = cohort.patient(patient_id)
    frac = patient.fraction(fraction_index)
    if not frac.dose:
        raise InputError("fraction has no dose file (RTDOSE or dose volume) in the manifest",
                         file=cohort.root / "cohort.json", patient=patient.id, fraction=fraction_index)

    grid = load_patient_reference(cohort, patient.id, reference, fraction_index)

    if frac.ct:
        ct_files, index = frac.ct, frac.index
    else:
        ct_files, index = _reference_ct_files(patient)
        log.info("patient %s fraction %s has no CT; using the reference CT", patient.id, frac.index)
    ct = _on_grid(_read_volume(cohort, ct_files, "ct", patient.id, index), grid,
                  cohort.paths(ct_files), patient.id, frac.index, default=AIR_HU)

    if frac.pet:
        pet = _on_grid(_read_volume(cohort, frac.pet, "pet", patient.id, frac.index), grid,
                       cohort.paths(frac.pet), patient.id, frac.index)
    else:
        log.warning("patient %s fraction %s: no PET; PET features will be missing", patient.id, frac.index)
        pet = None

    dose = _on_grid(_read_volume(cohort, frac.dose, "dose", patient.id, frac.index), grid,
                    cohort.paths(frac.dose), patient.id, frac.index)
    masks = _load_masks(cohort, patient, frac, grid)
    return FractionImages(ct=ct, pet=pet, dose=dose, masks=masks, reference=grid,
                          patient=patient.id, fraction=frac.index)
