"""Voxelwise BED texture maps for the cohort: summary columns (tex_) of the feature table, and map files
for `compass run --texture-maps` (the report and the Slicer bridge show them).

The maps are COMPASSLib.features.texture_maps (equal to pyradiomics' voxel-based extraction) of the
cumulative BED after fraction k inside an organ, on the same float32 BED image the dosiomics (dose_)
columns are computed from. Column names: `tex_<class>_<Feature>_<stat>`, stat `mean` and `p<q>` for
each percentile q of the settings, e.g. `tex_glcm_Contrast_p90` (summarise_map: finite ROI values only).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TEXTURE_DIR = "texture"   # OUT/texture/<patient>/fx<k>/<organ>_<class>_<Feature>.nrrd (+ ct.nrrd, texture_maps.json)


def column_names(tex: dict) -> list:
    """The tex_ columns of a row for texture settings `tex` (FeatureSettings.texture_params())."""
    stats = ["mean"] + [f"p{q:g}" for q in tex["percentiles"]]
    return [f"tex_{key.replace(':', '_')}_{s}" for key in tex["features"] for s in stats]


def organ_summary(bed_image, mask_image, tex: dict, *, organ=None, patient=None, fraction=None) -> dict:
    """tex_ columns of one organ: summaries of the texture maps of `bed_image` inside `mask_image`."""
    from COMPASSLib.errors import FeatureError
    from COMPASSLib.features.texture_maps import summarise_map, texture_maps

    try:
        maps = texture_maps(bed_image, mask_image, tex["features"], radius=tex["radius"],
                            bin_width=tex["bin_width_gy"])
    except FeatureError as e:
        e.message = f"texture maps of organ {organ}: {e.message}"
        raise e.at(patient=patient, fraction=fraction)
    row = {}
    for key, m in maps.items():
        summary = summarise_map(m, mask_image, percentiles=tex["percentiles"])
        row[f"tex_{key.replace(':', '_')}_mean"] = summary["mean"]
        for q in tex["percentiles"]:
            row[f"tex_{key.replace(':', '_')}_p{q:g}"] = summary[f"p{q:g}"]
    return row


def map_settings(feature_settings) -> dict:
    """Texture-map parameters for map files: the feature settings' texture options, or their defaults
    when the profile computes no tex_ columns (fast): maps and columns then use the same numbers."""
    return dataclasses.replace(feature_settings, texture=feature_settings.texture or True).texture_params()


def write_cohort_maps(cohort, out_dir, feature_settings, organs, fractions=None, device="cpu", progress=None,
                      executor=None) -> list:
    """Texture maps of the cumulative BED for `organs` ("all": every scored organ; a dict: patient -> its
    organs, patients left out get none) and `fractions` (None: all) of every patient, written as OUT/texture/<patient>/fx<k>/<organ>_<class>_<Feature>.nrrd with the
    fraction's CT on the same grid (ct.nrrd, the overlay's background) and a provenance JSON per folder.
    Returns one record per map: {patient, fraction, organ, feature, path (relative to out_dir)}, in the
    cohort's patient order. A patient whose maps fail is logged and skipped (its features may have failed
    already). Each patient is a task of `executor` (COMPASSLib.executors.Executor; None: this process):
    out_dir must then be a folder the workers can write."""
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.executors import using
    from COMPASSLib.features.settings import organs_to_score

    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    tex = map_settings(feature_settings)
    scored = organs_to_score(feature_settings, cohort)
    tasks = []
    for pid in cohort.patient_ids:
        chosen = organs.get(pid, []) if isinstance(organs, dict) else organs
        chosen = scored if chosen in (None, "all", ["all"]) else list(chosen)
        tasks.append((cohort, pid, str(out_dir), feature_settings, tex, chosen, fractions, device))
    per_patient = [[] for _ in tasks]
    with using(scheduler=executor) as ex:
        for done in ex.run(patient_maps_task, tasks, progress, "texture maps: {done}/{total} patients"):
            records, problem = done.value
            if problem:
                log.warning("texture maps skipped: %s", problem)
            per_patient[done.index] = records
    return [r for records in per_patient for r in records]


def patient_maps_task(cohort, pid, out_dir, fs, tex, organs, fractions, device):
    """One patient's maps as a task: (records, None), or ([], the error's text) for bad input."""
    from COMPASSLib.errors import CompassError

    try:
        return (_patient_maps(cohort, pid, Path(out_dir), fs, tex, organs, fractions, device) if organs else []), None
    except CompassError as e:
        return [], str(e.at(patient=pid))


def _patient_maps(cohort, pid, out_dir, fs, tex, organs, fractions, device) -> list:
    import SimpleITK as sitk

    from COMPASSLib import atomic, dose as dosemod
    from COMPASSLib.atomic import safe_filename
    from COMPASSLib.features.organ_bed import add_fraction
    from COMPASSLib.geometry import image_like
    from COMPASSLib.features.texture_maps import organ_texture_maps, write_maps
    from COMPASSLib.ingest import PatientLoader

    patient = cohort.patient(pid)
    loader = PatientLoader(cohort, pid, reference=fs.reference, modalities=("ct", "dose", "rtstruct"), organs=organs)
    wanted = None if fractions is None else {int(k) for k in fractions}
    prev, records = None, []
    for frac in patient.fractions:
        k = frac.index
        if wanted is not None and k > max(wanted):
            break
        images = loader.load(k)
        dose_arr = dosemod.checked_dose(images.dose, f"dose of fraction {k}")
        _, state = add_fraction(dose_arr, organs, fs.alpha_beta, prev)   # the table's cumulative BED, float32
        prev = state
        if wanted is not None and k not in wanted:
            continue
        maps = {}
        for organ in organs:
            mask = images.masks.get(organ)
            if mask is None or not sitk.GetArrayViewFromImage(mask).any():
                continue
            bed = image_like(state[f"bed_{organ}"].astype("float64"), images.dose, "float32")
            for key, m in organ_texture_maps(bed, {organ: mask}, tex["features"], radius=tex["radius"],
                                             bin_width=tex["bin_width_gy"], device=device, patient=pid,
                                             fraction=k)[organ].items():
                maps[f"{organ}:{key}"] = m    # written as <organ>_<class>_<Feature>.nrrd
        if not maps:
            continue
        fx_dir = out_dir / TEXTURE_DIR / safe_filename(pid) / f"fx{k}"
        paths = write_maps(maps, fx_dir, {"texture": tex, "device": str(device), "patient": pid, "fraction": k,
                                          "image": "cumulative BED (Gy)", "reference": fs.reference})
        if images.ct is not None:
            with atomic.atomic_path(fx_dir / "ct.nrrd") as tmp:
                sitk.WriteImage(images.ct, str(tmp), True)
        for key, path in zip(maps, paths):
            organ, feature = key.split(":", 1)
            records.append({"patient": pid, "fraction": k, "organ": organ, "feature": feature,
                            "path": str(path.relative_to(out_dir))})
    return records
