"""The feature rows of one fraction: every scored organ's BED kinetics and DVH metrics, shape, dosiomics on
the cumulative BED, tex_ summaries of its voxelwise texture maps, CT and PET radiomics and PET SUV figures.

`PatientContext` carries what stays the same over a patient's fractions (settings, organs, the
pyradiomics extractors built once, the shape features of the first contour, warnings and timings);
`fraction_rows` computes fraction k from the images of k and the cumulative maps after k - 1.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time

import numpy as np

from COMPASSLib.errors import CompassError, FeatureError, GeometryError
from COMPASSLib.features.settings import FeatureSettings

# pyradiomics' parameter validation (pykwalify + ruamel.yaml) is not thread-safe: two Dask worker threads
# building extractors at once fail with YAML parse errors. Building is serialised; extraction is not.
PYRADIOMICS_SETUP = threading.Lock()


def make_extractors(settings: FeatureSettings) -> dict:
    """modality -> configured pyradiomics extractor, plus "shape" when shape features are on. Built once
    per patient, not per fraction: pyradiomics validates its parameters against a schema on every
    construction (a sixth of a patient-fraction's time in the fast profile), and `execute` works on a
    copy of the extractor's settings, so one extractor serves every fraction."""
    from COMPASSLib.features import radiomics as rad

    with PYRADIOMICS_SETUP:
        extractors = {m: rad.make_extractor(settings.params(m), source=settings.radiomics_params.get(m))
                      for m, classes in settings.radiomics.items() if classes}
        if settings.shape:
            extractors["shape"] = rad.make_extractor({"featureClass": {"shape": []}, "setting": {"label": 1}},
                                                     shape=True)
    return extractors


def needed_modalities(settings: FeatureSettings) -> tuple:
    """What ingest must load for these settings. Dose (BED kinetics, dosiomics), structures (every row)
    and PET (the pet_suv_* columns of every profile) always; the CT only for ct_ radiomics: it feeds
    nothing else (kinetics, shape and PET features read the dose, masks and PET only)."""
    wanted = ["pet", "dose", "rtstruct"]
    if settings.radiomics.get("ct"):
        wanted.insert(0, "ct")
    return tuple(wanted)


@dataclasses.dataclass
class PatientContext:
    """What the fractions of one patient share while their rows are computed."""
    patient_id: str
    organs: list
    settings: FeatureSettings
    extractors: dict | None = None                              # built on the first fraction computed
    shape: dict = dataclasses.field(default_factory=dict)      # organ -> shape_ columns (first contour)
    warnings: list = dataclasses.field(default_factory=list)   # of the fraction being computed

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def fraction_rows(ctx: PatientContext, k: int, images, previous: dict | None, timings: dict):
    """(rows of fraction k, cumulative maps after k). `previous`: the maps after k - 1 (None for the
    first fraction); `timings` gains kinetics_s, radiomics_s and texture_s (seconds, disjoint)."""
    from COMPASSLib import dose as dosemod
    from COMPASSLib.features.organ_bed import add_fraction

    if ctx.extractors is None:
        ctx.extractors = make_extractors(ctx.settings)
    _check_memory(ctx, k, images.dose)
    dose_arr = dosemod.checked_dose(images.dose, f"dose of fraction {k}")
    if previous and previous["dose"].shape != dose_arr.shape:
        raise GeometryError("dose grid differs from the earlier fractions' grid; cumulative BED needs one grid "
                            "per patient (use the CT reference grid)", patient=ctx.patient_id, fraction=k)
    fraction_beds, state = add_fraction(dose_arr, ctx.organs, ctx.settings.alpha_beta, previous)
    rows = []
    for organ in ctx.organs:
        mask_img = _organ_mask(ctx, images, organ, k)
        if mask_img is not None:
            rows.append(_organ_row(ctx, k, images, organ, mask_img, dose_arr, fraction_beds[organ], state, timings))
    if images.pet is None:
        ctx.warn(f"no PET for patient {ctx.patient_id} fraction {k}: pet_* columns are NaN")
    return rows, state


def _check_memory(ctx, k, dose) -> None:
    """Refuse (FeatureError, COMPASSLib.memory) organ count x grid size that would not fit: per voxel and
    organ the cumulative BED (float32) before and after the fraction and the fraction BED (float64), and
    ~40 bytes of float64 dose and BED temporaries."""
    from COMPASSLib import memory

    size = dose.GetSize() if hasattr(dose, "GetSize") else np.shape(dose)
    memory.check(f"cumulative BED maps of {len(ctx.organs)} organ(s) on a {' x '.join(map(str, size))} grid",
                 memory.grid_bytes(size, 16 * len(ctx.organs) + 40), hint="score fewer organs or use a coarser grid",
                 error=FeatureError, patient=ctx.patient_id, fraction=k)


def _organ_mask(ctx, images, organ, k):
    import SimpleITK as sitk

    if organ not in images.masks:
        unmapped = getattr(images, "unmapped_rois", None) or []
        names = (f"; ROI names of its structure set that map to no organ: {', '.join(unmapped)} (add the one "
                 f"that is {organ} to the manifest's 'organs' map)") if unmapped else ""
        ctx.warn(f"organ {organ} has no contour in patient {ctx.patient_id} fraction {k}: no row{names}")
        return None
    mask_img = images.masks[organ]
    if not (sitk.GetArrayViewFromImage(mask_img) > 0).any():
        ctx.warn(f"organ {organ} contour is empty in patient {ctx.patient_id} fraction {k}: no row")
        return None
    return mask_img


def _organ_row(ctx, k, images, organ, mask_img, dose_arr, fraction_bed, state, timings) -> dict:
    import SimpleITK as sitk

    from COMPASSLib import dose as dosemod
    from COMPASSLib import resources
    from COMPASSLib.features import kinetics
    from COMPASSLib.geometry import image_like

    mask = sitk.GetArrayViewFromImage(mask_img) > 0
    cum_bed = state[f"bed_{organ}"].astype(np.float64)
    row = {"patient": ctx.patient_id, "organ": organ, "fraction": k}
    t0 = time.perf_counter()
    try:
        row.update(kinetics.organ_kinetics(cum_bed, fraction_bed, state["dose"].astype(np.float64), dose_arr, mask,
                                           dosemod.voxel_volume_cc(images.dose),
                                           resources.alpha_beta(organ, ctx.settings.alpha_beta),
                                           resources.geud_n(organ), ctx.settings.bed_levels_gy))
    except CompassError as e:
        raise FeatureError(f"kinetics for organ {organ}: {e.message}", patient=ctx.patient_id, fraction=k) from None
    timings["kinetics_s"] += time.perf_counter() - t0
    bed_img = image_like(cum_bed, images.dose, np.float32)   # the float32 BED image of dosiomics and texture maps alike
    where = dict(organ=organ, patient=ctx.patient_id, fraction=k)
    t0 = time.perf_counter()
    row.update(_shape(ctx, organ, mask_img, k))
    row.update(_image_features(ctx, images, bed_img, mask_img, where))
    timings["radiomics_s"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    row.update(_texture_summaries(ctx, organ, bed_img, mask_img, where))
    timings["texture_s"] += time.perf_counter() - t0
    return row


def _shape(ctx, organ, mask_img, k) -> dict:
    """Shape once per organ, from the first fraction's contour."""
    from COMPASSLib.features import radiomics as rad

    if not ctx.settings.shape:
        return {}
    if organ not in ctx.shape:
        values = rad.execute(ctx.extractors["shape"], mask_img, mask_img, "x", organ=organ,
                             patient=ctx.patient_id, fraction=k)
        ctx.shape[organ] = {c[2:]: v for c, v in values.items()}   # x_shape_<F> -> shape_<F>
    return ctx.shape[organ]


def _image_features(ctx, images, bed_img, mask_img, where) -> dict:
    """dose_ (pyradiomics on the cumulative BED), ct_ and pet_ radiomics, PET SUV figures."""
    from COMPASSLib.features import pet as petmod, radiomics as rad

    extractors, row = ctx.extractors, {}
    if "dose" in extractors:
        row.update(rad.execute(extractors["dose"], bed_img, mask_img, "dose", **where))
    if "ct" in extractors:
        row.update(rad.execute(extractors["ct"], images.ct, mask_img, "ct", **where))
    if images.pet is not None:
        row.update(petmod.suv_features(images.pet, mask_img))
        if "pet" in extractors:
            row.update(rad.execute(extractors["pet"], images.pet, mask_img, "pet", **where))
    else:
        row.update({c: math.nan for c in petmod.PET_COLUMNS})
        if "pet" in extractors:
            with PYRADIOMICS_SETUP:   # builds an extractor (once) to name the columns
                row.update(rad.nan_features(ctx.settings.params("pet"), "pet"))
    return row


def _texture_summaries(ctx, organ, bed_img, mask_img, where) -> dict:
    from COMPASSLib.features import texture_summary

    tex = ctx.settings.texture_params()
    if not tex or (tex["organs"] is not None and organ not in tex["organs"]):
        return {}
    return texture_summary.organ_summary(bed_img, mask_img, tex, **where)
