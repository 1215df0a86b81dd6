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
The ROI names that map to no organ are kept as `FractionImages.unmapped_rois`; when a fraction's
structure set lacks an organ that another structure set of the patient has (an organ named
differently, e.g. "Herz"), a warning names the fraction and those unmapped ROI names, so the user
can add the right one to the manifest's `organs` map.

`PatientLoader` loads the fractions of one patient and reads what they share once (the reference grid,
each structure file); it can skip modalities a caller does not use. `load_fraction` is the one-off form.
Nothing is cached on disk.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from COMPASSLib.cohort import MODALITIES, Cohort
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
    unmapped_rois: list = field(default_factory=list)   # ROI names of the structure set mapping to no organ


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
        image = read_volume(paths, modality, patient=patient_id, fraction=index)
        if modality == "dose":   # a fraction's dose: one fraction's physical dose, nothing else
            from COMPASSLib.io.fraction_dose import check_fraction_dose

            check_fraction_dose(image, paths[0], patient_id, index)
        return image
    except CompassError as e:
        raise _with_context(e, paths, patient_id, index) from None


def _on_grid(image, grid, paths, patient_id, index, default=0.0):
    from COMPASSLib.geometry import resample_image

    try:
        return resample_image(image, grid, default=default)
    except CompassError as e:
        raise _with_context(e, paths, patient_id, index) from None


def read_dose_on_grid(cohort, files, grid, patient_id, index):
    """One fraction's physical dose (checked as such: io.fraction_dose) read from `files` (manifest entries,
    or absolute paths: a replacement plan of twin.whatif) onto the patient's grid; a file on another
    FrameOfReferenceUID is refused (GeometryError naming it)."""
    return _on_grid(_read_volume(cohort, files, "dose", patient_id, index), grid, cohort.paths(files),
                    patient_id, index)


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


def _structure_files(patient, frac):
    """The structure files of a fraction (its own, else the planning ones) and the index they belong to."""
    if frac.rtstruct:
        return frac.rtstruct, frac.index
    if patient.planning is not None and patient.planning.rtstruct:
        return patient.planning.rtstruct, 0
    return [], frac.index


def _grid_key(grid) -> tuple:
    """Hashable geometry + frame of reference of a grid: masks rasterised on one grid serve another
    only when this key is equal."""
    frame = grid.GetMetaData("FrameOfReferenceUID") if grid.HasMetaDataKey("FrameOfReferenceUID") else ""
    return (tuple(grid.GetSize()), tuple(grid.GetOrigin()), tuple(grid.GetSpacing()), tuple(grid.GetDirection()),
            frame)


class PatientLoader:
    """Loads the fractions of one patient, reading what every fraction shares only once: the reference
    grid (planning-CT headers, or each fraction's dose grid with reference="dose") and the organ masks
    of a structure file (the planning RTSTRUCT serves every fraction without its own). Memoised in
    memory for the loader's life only; nothing is cached on disk.

    `modalities`: the images to load ("ct", "pet", "dose", "rtstruct"); a skipped one is None (masks:
    {}) and is not read at all, e.g. no CT when no CT feature is wanted. `organs`: canonical organs
    whose masks are wanted (None: every organ the ROI names map to); other ROIs are not rasterised."""

    def __init__(self, cohort, patient_id, reference: str = "ct", modalities=MODALITIES, organs=None):
        self.cohort = _cohort(cohort)
        self.patient = self.cohort.patient(patient_id)
        self.reference = reference
        modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise InputError(f"unknown modalities {sorted(unknown)} (use {', '.join(MODALITIES)})",
                             patient=self.patient.id)
        self.modalities = modalities
        self.organs = None if organs is None else set(organs)
        self._grids = {}    # fraction index (None for the CT reference) -> grid
        self._masks = {}    # (structure file paths, grid key) -> ({organ: mask}, [unmapped ROI names])
        self._names = {}    # structure file paths -> ROI names (None: a labelmap, names known once read)
        self._expected = None   # organs (wanted ones) that some structure set of the patient has

    # ---- shared per patient
    def reference_grid(self, fraction_index=None):
        """The patient's reference grid (see `load_patient_reference`), read once per loader."""
        key = None if self.reference == "ct" else fraction_index
        if key not in self._grids:
            self._grids[key] = load_patient_reference(self.cohort, self.patient.id, self.reference, fraction_index)
        import SimpleITK as sitk

        return sitk.Image(self._grids[key])   # a copy (copy-on-write): callers may edit their own

    def masks(self, fraction_index, grid) -> dict:
        """Canonical organ -> uint8 mask of a fraction on `grid`; each structure file is rasterised once per
        grid. Returns new image objects each call (sharing pixel buffers copy-on-write), so a caller
        that edits one does not change what the next fraction gets."""
        import SimpleITK as sitk

        key = self._masks_key(fraction_index, grid)
        return {organ: sitk.Image(mask) for organ, mask in self._masks[key][0].items()}

    def unmapped_rois(self, fraction_index, grid) -> list:
        """ROI names of the fraction's structure set that map to no organ (manifest map, synonyms)."""
        return list(self._masks[self._masks_key(fraction_index, grid)][1])

    def _masks_key(self, fraction_index, grid):
        frac = self.patient.fraction(fraction_index)
        files, _ = _structure_files(self.patient, frac)
        key = (tuple(str(p) for p in self.cohort.paths(files)), _grid_key(grid))
        if key not in self._masks:
            masks, unmapped = _load_masks(self.cohort, self.patient, frac, grid, self.organs, self._roi_names)
            self._masks[key] = (masks, unmapped)
            self._warn_missing_organs(frac, files, masks, unmapped)
        return key

    def _roi_names(self, paths, index):
        """ROI names of a structure file (memoised; None for labelmaps)."""
        key = tuple(str(p) for p in paths)
        if key not in self._names:
            self._names[key] = _structure_names(paths, self.patient.id, index)
        return self._names[key]

    def expected_organs(self) -> set:
        """The (wanted) organs that at least one structure set of the patient maps an ROI name to, from the
        ROI names of its RTSTRUCTs (headers only; labelmaps count once they have been read). A file that
        cannot be listed here is skipped: its own fraction reports the error."""
        if self._expected is None:
            expected = set()
            sources = [f for f in [self.patient.planning, *self.patient.fractions] if f is not None and f.rtstruct]
            for f in sources:
                paths = self.cohort.paths(f.rtstruct)
                if not all(p.is_file() for p in paths):
                    continue
                try:
                    names = self._roi_names(paths, f.index)
                except CompassError:
                    continue
                expected |= {o for o in (organ_for(n, self.patient.organs) for n in names or [])
                             if o is not None and (self.organs is None or o in self.organs)}
            self._expected = expected
        found = set()
        for masks, _ in self._masks.values():
            found |= set(masks)
        return self._expected | found

    def _warn_missing_organs(self, frac, files, masks, unmapped):
        if not files:
            return
        missing = sorted(self.expected_organs() - set(masks))
        if not missing:
            return
        names = (f"ROI name(s) mapping to no organ: {', '.join(repr(n) for n in unmapped)} (add the right one to "
                 "the manifest's 'organs' map)") if unmapped else "every ROI name of it maps to an organ"
        log.warning("patient %s fraction %s: structure set %s lacks organ(s) %s that other structure sets of the "
                    "patient have; %s", self.patient.id, frac.index, self.cohort.paths(files)[0],
                    ", ".join(missing), names)

    def _check_memory(self, grid, index) -> None:
        """Refuse (InputError, COMPASSLib.memory) a fraction whose images and masks on the reference grid
        would not fit: per voxel 8 bytes per image (the resampled float32 image and SimpleITK's
        temporary) and 2 per organ mask (the mask and its rasterisation), before anything is read."""
        from COMPASSLib import memory

        images = sum(m in self.modalities for m in ("ct", "pet", "dose"))
        organs = len(self.organs) if self.organs is not None else len(set(self.patient.organs.values())) or 1
        organs = organs if "rtstruct" in self.modalities else 0
        size = grid.GetSize()
        memory.check(f"fraction images on the reference grid ({' x '.join(map(str, size))} voxels, {images} "
                     f"image(s), {organs} organ mask(s))", memory.grid_bytes(size, 8 * images + 2 * organs),
                     hint="check the reference grid's headers (Rows, Columns, slices, spacing) or use fewer organs",
                     error=InputError, patient=self.patient.id, fraction=index)

    # ---- one fraction
    def load(self, fraction_index, reference_image=None) -> FractionImages:
        """The images of one fraction on the reference grid (see module doc). `reference_image`: a grid
        to use instead of the patient's reference (e.g. one the caller already holds)."""
        cohort, patient = self.cohort, self.patient
        frac = patient.fraction(fraction_index)
        wanted = self.modalities
        if "dose" in wanted and not frac.dose:
            raise InputError("fraction has no dose file (RTDOSE or dose volume) in the manifest",
                             file=cohort.root / "cohort.json", patient=patient.id, fraction=fraction_index)
        grid = reference_image if reference_image is not None else self.reference_grid(frac.index)
        self._check_memory(grid, frac.index)

        ct = None
        if "ct" in wanted:
            if frac.ct:
                ct_files, index = frac.ct, frac.index
            else:
                ct_files, index = _reference_ct_files(patient)
                log.info("patient %s fraction %s has no CT; using the reference CT", patient.id, frac.index)
            ct = _on_grid(_read_volume(cohort, ct_files, "ct", patient.id, index), grid,
                          cohort.paths(ct_files), patient.id, frac.index, default=AIR_HU)

        pet = None
        if "pet" in wanted and frac.pet:
            pet = _on_grid(_read_volume(cohort, frac.pet, "pet", patient.id, frac.index), grid,
                           cohort.paths(frac.pet), patient.id, frac.index)
        elif "pet" in wanted:
            log.warning("patient %s fraction %s: no PET; PET features will be missing", patient.id, frac.index)

        dose = read_dose_on_grid(cohort, frac.dose, grid, patient.id, frac.index) if "dose" in wanted else None
        masks = self.masks(frac.index, grid) if "rtstruct" in wanted else {}
        unmapped = self.unmapped_rois(frac.index, grid) if "rtstruct" in wanted else []
        return FractionImages(ct=ct, pet=pet, dose=dose, masks=masks, reference=grid,
                              patient=patient.id, fraction=frac.index, unmapped_rois=unmapped)


def _load_masks(cohort, patient, frac, grid, organs=None, list_names=None):
    """({organ: mask}, [ROI names mapping to no organ]) of the fraction's structure set on `grid`."""
    import SimpleITK as sitk

    from COMPASSLib.io import read_structures

    files, index = _structure_files(patient, frac)
    if not files:
        log.warning("patient %s fraction %s: no structures (RTSTRUCT/labelmap); no organ masks",
                    patient.id, frac.index)
        return {}, []

    def kept(organ):
        return organ is not None and (organs is None or organ in organs)

    paths = cohort.paths(files)
    try:
        names = (list_names or (lambda p, i: _structure_names(p, patient.id, i)))(paths, frac.index)
        unmapped = [] if names is None else [n for n in names if organ_for(n, patient.organs) is None]
        wanted = None if names is None else [n for n in names if kept(organ_for(n, patient.organs))]
        if wanted == []:
            log.warning("patient %s fraction %s: no ROI in %s maps to a%s organ%s", patient.id, frac.index, paths[0],
                        " known" if organs is None else " wanted",
                        f" (ROI names mapping to no organ: {', '.join(unmapped)})" if unmapped else "")
            return {}, unmapped
        rois = read_structures(paths, grid, rois=wanted, patient=patient.id, fraction=frac.index)
    except CompassError as e:
        raise _with_context(e, paths, patient.id, frac.index) from None
    if names is None:   # a labelmap: its names are known now
        unmapped = [n for n in rois if organ_for(n, patient.organs) is None]
    masks = {}
    for roi, mask in rois.items():
        organ = organ_for(roi, patient.organs)
        if not kept(organ):
            continue
        masks[organ] = sitk.Or(masks[organ], mask) if organ in masks else mask
    log.debug("patient %s fraction %s: masks %s from %s (fraction %s)", patient.id, frac.index,
              sorted(masks), paths[0], index)
    return masks, unmapped


def load_fraction(cohort, patient_id, fraction_index, reference: str = "ct", *, reference_image=None,
                  modalities=MODALITIES, organs=None) -> FractionImages:
    """CT, PET, dose and organ masks of one fraction on the patient's reference grid (see module doc).

    For several fractions of one patient use a `PatientLoader` (reads the shared grid and structure files
    once). `reference_image`: the reference grid when the caller already has it (skips reading it);
    `modalities`: what to load (others are None); `organs`: canonical organs whose masks are wanted."""
    loader = PatientLoader(cohort, patient_id, reference, modalities=modalities, organs=organs)
    return loader.load(fraction_index, reference_image=reference_image)
