"""The feature table: one row per patient x organ x fraction, extracted per patient (in parallel over
patients, locally or on a Dask cluster) with an on-disk cache per patient-fraction.

Cache: one entry per patient and fraction k, keyed by a chained sha256 over the settings (with the
pyradiomics parameters' content), the feature-code version, the patient's organ map, the planning files
and the files of fractions 1..k. Cumulative BED after k depends on every earlier dose, and the chain
makes the key of k change whenever any of them does. An entry holds the rows of k (JSON) and the
cumulative maps after k (.npz, no pickle), so adding fraction k+1 computes only k+1 from them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from COMPASSLib.atomic import safe_filename
from COMPASSLib.errors import CompassError, FeatureError, GeometryError
from COMPASSLib.features.settings import FeatureSettings, organs_to_score
from COMPASSLib.geometry import image_like

log = logging.getLogger(__name__)

# Bump when the numbers a given input and settings produce change: old cache entries then stop matching.
FEATURE_CODE_VERSION = "3"   # 2, 3: texture-map (tex_) numerics changed at the last digits (3: compiled MCC, cells)
KEYS = ("patient", "organ", "fraction")
GROUPS = ("bed_", "dvh_", "shape_", "dose_", "tex_", "ct_", "pet_", "clin_")
_DELTA_GROUPS = ("ct_", "pet_")


# pyradiomics' parameter validation (pykwalify + ruamel.yaml) is not thread-safe: two Dask worker threads
# building extractors at once fail with YAML parse errors. Building is serialised; extraction is not.
_PYRADIOMICS_SETUP = threading.Lock()


class FeatureWarning(UserWarning):
    """A feature group is missing for a patient/fraction (e.g. no PET that day): its columns are NaN."""


# --------------------------------------------------------------------------------------- cache keys
def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def _files_digest(cohort, files) -> str:
    from COMPASSLib.provenance import sha256_file

    # content and name of each file (names order the series; a renamed copy of a cohort still matches)
    return _digest(*[f"{Path(f).name}:{sha256_file(cohort.path(f))}" for f in sorted(files)]) if files else ""


def _fraction_digest(cohort, fraction) -> str:
    from COMPASSLib.cohort import MODALITIES

    return _digest(*[f"{m}={_files_digest(cohort, fraction.files(m))}" for m in MODALITIES])


def _settings_json(settings: FeatureSettings) -> str:
    return json.dumps(settings.resolved(), sort_keys=True, default=str)


def _missing_file(cohort, fraction):
    for m in ("dose", "ct", "pet", "rtstruct"):
        for f in fraction.files(m):
            if not cohort.path(f).is_file():
                return m, cohort.path(f)
    return None


# --------------------------------------------------------------------------------------- cache store
class _Cache:
    def __init__(self, root, patient_id):
        self.dir = Path(root) / safe_filename(patient_id) if root else None

    def _paths(self, key):
        return self.dir / f"{key}.json", self.dir / f"{key}.npz"

    def load_rows(self, key):
        if self.dir is None:
            return None
        rows_path, maps_path = self._paths(key)
        if not (rows_path.is_file() and maps_path.is_file()):
            return None
        try:
            return json.loads(rows_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None   # a damaged entry is recomputed

    def load_maps(self, key) -> dict:
        with np.load(self._paths(key)[1], allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def save(self, key, rows, maps: dict):
        if self.dir is None:
            return
        from COMPASSLib.atomic import atomic_path, write_text

        rows_path, maps_path = self._paths(key)
        with atomic_path(maps_path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **maps)
        write_text(rows_path, json.dumps(rows, allow_nan=True))   # rows last: an entry counts once complete


# --------------------------------------------------------------------------------------- one fraction
def _extractors(settings: FeatureSettings) -> dict:
    """modality -> configured pyradiomics extractor, plus "shape" when shape features are on. Built once
    per patient, not per fraction: pyradiomics validates its parameters against a schema on every
    construction (a sixth of a patient-fraction's time in the fast profile), and `execute` works on a
    copy of the extractor's settings, so one extractor serves every fraction."""
    from COMPASSLib.features import radiomics as rad

    with _PYRADIOMICS_SETUP:
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


def _fraction_rows(images, organs, settings: FeatureSettings, state: dict, prev_maps: dict, warn, timings,
                   patient_id, k, shape_cache: dict, extractors: dict):
    """Rows for the organs of one fraction; updates `state` with the cumulative maps after k.
    `extractors`: from `_extractors(settings)`."""
    import SimpleITK as sitk

    from COMPASSLib import dose as dosemod
    from COMPASSLib import resources
    from COMPASSLib.features import kinetics, pet as petmod, radiomics as rad, texture_summary

    dose_arr = dosemod.checked_dose(images.dose, f"dose of fraction {k}")
    voxel_cc = dosemod.voxel_volume_cc(images.dose)
    if prev_maps and prev_maps["dose"].shape != dose_arr.shape:
        raise GeometryError("dose grid differs from the earlier fractions' grid; cumulative BED needs one grid "
                            "per patient (use the CT reference grid)", patient=patient_id, fraction=k)
    fx_beds = accumulate_bed(dose_arr, organs, settings.alpha_beta, prev_maps, state)
    tex = settings.texture_params()
    tex_organs = set(organs if not tex or tex["organs"] is None else tex["organs"])
    rows = []
    for organ in organs:
        if organ not in images.masks:
            warn(f"organ {organ} has no contour in patient {patient_id} fraction {k}: no row")
            continue
        mask_img = images.masks[organ]
        mask = sitk.GetArrayViewFromImage(mask_img) > 0
        if not mask.any():
            warn(f"organ {organ} contour is empty in patient {patient_id} fraction {k}: no row")
            continue
        ab = resources.alpha_beta(organ, settings.alpha_beta)
        fx_bed, cum_bed = fx_beds[organ], state[f"bed_{organ}"].astype(np.float64)

        t0 = time.perf_counter()
        row = {"patient": patient_id, "organ": organ, "fraction": k}
        try:
            row.update(kinetics.organ_kinetics(cum_bed, fx_bed, state["dose"].astype(np.float64), dose_arr, mask, voxel_cc, ab,
                                               resources.geud_n(organ), settings.bed_levels_gy))
        except CompassError as e:
            raise FeatureError(f"kinetics for organ {organ}: {e.message}", patient=patient_id, fraction=k) from None
        timings["kinetics_s"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        if settings.shape:
            if organ not in shape_cache:   # shape once per organ: from the first fraction's contour
                values = rad.execute(extractors["shape"], mask_img, mask_img, "x", organ=organ, patient=patient_id,
                                     fraction=k)
                shape_cache[organ] = {c[2:]: v for c, v in values.items()}   # x_shape_<F> -> shape_<F>
            row.update(shape_cache[organ])
        where = dict(organ=organ, patient=patient_id, fraction=k)
        bed_img = image_like(cum_bed, images.dose, np.float32)   # the float32 BED image of dosiomics and texture maps alike
        if "dose" in extractors:
            row.update(rad.execute(extractors["dose"], bed_img, mask_img, "dose", **where))
        if tex and organ in tex_organs:
            t1 = time.perf_counter()
            row.update(texture_summary.organ_summary(bed_img, mask_img, tex, **where))
            timings["texture_s"] = timings.get("texture_s", 0.0) + time.perf_counter() - t1
        if "ct" in extractors:
            row.update(rad.execute(extractors["ct"], images.ct, mask_img, "ct", **where))
        if images.pet is not None:
            row.update(petmod.suv_features(images.pet, mask_img))
            if "pet" in extractors:
                row.update(rad.execute(extractors["pet"], images.pet, mask_img, "pet", **where))
        else:
            row.update({c: math.nan for c in petmod.PET_COLUMNS})
            if "pet" in extractors:
                with _PYRADIOMICS_SETUP:   # builds an extractor (once) to name the columns
                    row.update(rad.nan_features(settings.params("pet"), "pet"))
        timings["radiomics_s"] += time.perf_counter() - t0
        rows.append(row)
    if images.pet is None:
        warn(f"no PET for patient {patient_id} fraction {k}: pet_* columns are NaN")
    return rows


def accumulate_bed(dose_arr, organs, alpha_beta_overrides, prev_maps, state) -> dict:
    """Cumulative physical dose and per-organ BED after this fraction into `state` ("dose", "bed_<organ>",
    float32 like the NRRD/DICOM inputs; the cache stores the same arrays, so a cached rerun is exact).
    Returns the fraction's own BED per organ (float64)."""
    from COMPASSLib import dose as dosemod
    from COMPASSLib import resources

    state["dose"] = (dose_arr + (prev_maps["dose"] if prev_maps else 0.0)).astype(np.float32)
    fx_beds = {}
    for organ in organs:   # BED maps do not depend on the contour: keep them for every organ, every fraction
        ab = resources.alpha_beta(organ, alpha_beta_overrides)
        fx_beds[organ] = np.asarray(dosemod.bed(dose_arr, ab))
        state[f"bed_{organ}"] = (fx_beds[organ] + (prev_maps[f"bed_{organ}"] if prev_maps else 0.0)).astype(np.float32)
    return fx_beds


# --------------------------------------------------------------------------------------- one patient
def extract_patient(cohort, patient_id: str, settings, cache_dir=None, organs=None) -> dict:
    """Features of every fraction of one patient. Runs in worker processes / Dask workers, so it takes
    and returns plain data and never raises for bad input: a CompassError becomes `error` (the other
    patients go on). Returns {patient, rows, warnings, computed (fractions computed, not from cache),
    inputs (checksums per fraction), timings (per computed fraction), error}."""
    from COMPASSLib.cohort import Cohort

    settings = settings if isinstance(settings, FeatureSettings) else FeatureSettings.from_dict(settings)
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    out = {"patient": patient_id, "rows": [], "warnings": [], "computed": [], "inputs": {}, "timings": [],
           "error": None}
    try:
        _extract_patient(cohort, patient_id, settings, cache_dir, organs or organs_to_score(settings, cohort), out)
    except CompassError as e:
        out["error"] = str(e.at(patient=patient_id))
        out["rows"] = []
    except Exception as e:  # a bug or a library failure for this patient: report it, let the others finish
        log.exception("feature extraction failed for patient %s", patient_id)
        out["error"] = f"unexpected {type(e).__name__}: {e} [patient {patient_id}]"
        out["rows"] = []
    return out


def _extract_patient(cohort, patient_id, settings, cache_dir, organs, out):
    from COMPASSLib.errors import InputError
    from COMPASSLib.ingest import PatientLoader

    patient = cohort.patient(patient_id)
    # one loader per patient: the reference grid and each structure file are read once, not per fraction
    loader = PatientLoader(cohort, patient_id, reference=settings.reference, modalities=needed_modalities(settings),
                           organs=organs)
    extractors = None   # built on the first fraction that is not in the cache
    planning = _fraction_digest(cohort, patient.planning) if patient.planning else ""
    chain = _digest(_settings_json(settings), FEATURE_CODE_VERSION, json.dumps(sorted(organs)),
                    json.dumps(patient.organs, sort_keys=True), planning)
    cache = _Cache(cache_dir, patient_id)
    prev_key, prev_maps, shape_cache = None, None, {}
    for frac in patient.fractions:
        k = frac.index
        missing = _missing_file(cohort, frac)
        if missing:
            raise InputError(f"{missing[0]} file of the fraction is missing", file=missing[1], patient=patient_id,
                             fraction=k)
        if not frac.dose:
            raise InputError("fraction has no dose file in the manifest", patient=patient_id, fraction=k)
        fd = _fraction_digest(cohort, frac)
        out["inputs"][str(k)] = fd
        key = _digest(chain, fd)
        cached = cache.load_rows(key)
        if cached is not None:
            rows = cached["rows"]
            out["warnings"] += cached["warnings"]
            for r in rows:   # shape is per organ from the first fraction: keep it for later fractions
                shape_cache.setdefault(r["organ"], {c: v for c, v in r.items() if c.startswith("shape_")})
        else:
            if prev_maps is None and prev_key is not None:
                prev_maps = cache.load_maps(prev_key)
            t_start = time.perf_counter()
            images = loader.load(k)
            timings = {"patient": patient_id, "fraction": k, "io_s": time.perf_counter() - t_start,
                       "kinetics_s": 0.0, "radiomics_s": 0.0}
            fwarn = []
            state = {}
            try:
                extractors = _extractors(settings) if extractors is None else extractors
                rows = _fraction_rows(images, organs, settings, state, prev_maps, fwarn.append, timings, patient_id,
                                      k, shape_cache, extractors)
            except CompassError as e:
                raise e.at(patient=patient_id, fraction=k)
            timings["total_s"] = time.perf_counter() - t_start
            cache.save(key, {"rows": rows, "warnings": fwarn}, state)
            out["warnings"] += fwarn
            out["computed"].append(k)
            out["timings"].append(timings)
            prev_maps = state
        if cached is not None:
            prev_maps = None   # loaded lazily from this entry if the next fraction must be computed
        prev_key = key
        out["rows"] += rows
        chain = key


# --------------------------------------------------------------------------------------- cohort
def extract_cohort(cohort, settings=None, workers: int = 1, scheduler=None, cache_dir=None, progress=True,
                   clinical=None, organs=None):
    """The feature table of a cohort (path of cohort.json / its folder, or a Cohort). `settings`: a
    FeatureSettings, a dict of its fields, a profile name ("full", "fast") or None (full).

    workers > 1: a local process pool over patients; `scheduler`: a Dask scheduler address (or a
    distributed.Client) running the same per-patient function. Patients that fail (e.g. a missing dose
    file) are left out and listed in `table.attrs["failures"]` ({patient: message}); the others finish.
    `table.attrs` also holds `computed` ({patient: [fractions computed]}), `inputs` (checksums),
    `timings` and `settings`."""
    from COMPASSLib.cohort import Cohort

    if settings is None or isinstance(settings, str):   # None or a profile name: "full", "fast"
        settings = FeatureSettings(profile=settings or "full")
    elif not isinstance(settings, FeatureSettings):
        settings = FeatureSettings.from_dict(dict(settings))
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    organs = organs or organs_to_score(settings, cohort)
    sdict = settings.to_dict()
    cache_dir = str(cache_dir) if cache_dir else None
    ids = cohort.patient_ids
    results = list(_run_all(cohort, ids, sdict, cache_dir, organs, workers, scheduler, progress))

    results.sort(key=lambda r: ids.index(r["patient"]))
    failures, rows = {}, []
    for r in results:
        for w in r["warnings"]:
            log.warning(w)
            warnings.warn(w, FeatureWarning, stacklevel=2)
        if r["error"]:
            failures[r["patient"]] = r["error"]
            log.error("features: %s", r["error"])
        rows += r["rows"]
    table = assemble(rows, settings)
    if clinical:
        from COMPASSLib.features.clinical import join_clinical

        table = join_clinical(table, clinical)
    table.attrs.update({
        "failures": failures,
        "computed": {r["patient"]: r["computed"] for r in results},
        "inputs": {r["patient"]: r["inputs"] for r in results},
        "timings": [t for r in results for t in r["timings"]],
        "settings": settings.resolved(),
        "organs": organs,
    })
    return table


def _run_all(cohort, ids, sdict, cache_dir, organs, workers, scheduler, progress):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(ids), desc="features", unit="patient", disable=not progress)
    try:
        if scheduler is not None:
            yield from _run_dask(cohort, ids, sdict, cache_dir, organs, scheduler, bar)
        elif workers and workers > 1:
            import concurrent.futures as cf
            import multiprocessing

            # spawn: workers start clean (no inherited threads or locks from the caller, e.g. a Dask client)
            ctx = multiprocessing.get_context("spawn")
            n = min(workers, len(ids)) or 1
            # the cores shared out between the workers (torch in each would otherwise take them all)
            share = max(1, (os.cpu_count() or 1) // n)
            with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_limit_threads,
                                        initargs=(share,)) as pool:
                futures = [pool.submit(extract_patient, cohort, pid, sdict, cache_dir, organs) for pid in ids]
                for f in cf.as_completed(futures):
                    bar.update()
                    yield f.result()
        else:
            for pid in ids:
                yield extract_patient(cohort, pid, sdict, cache_dir, organs)
                bar.update()
    finally:
        bar.close()


def _limit_threads(n: int) -> None:
    """Worker-process initialiser: at most n compute threads for torch (which loads later, inside the
    work) and for BLAS libraries not loaded yet."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def _run_dask(cohort, ids, sdict, cache_dir, organs, scheduler, bar):
    from dask.distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        # pure=False: a fresh task per call (settings or files may have changed since a previous run)
        futures = [client.submit(extract_patient, cohort, pid, sdict, cache_dir, organs, pure=False) for pid in ids]
        for f in as_completed(futures):
            bar.update()
            yield f.result()
    finally:
        if client is not scheduler:
            client.close()


# --------------------------------------------------------------------------------------- table
def assemble(rows: list, settings: FeatureSettings):
    """Rows -> DataFrame with the documented column order, increments/rates and delta columns."""
    import pandas as pd

    from COMPASSLib.features.kinetics import add_increments

    if not rows:
        return pd.DataFrame(columns=list(KEYS))
    table = pd.DataFrame(rows)
    table["fraction"] = table["fraction"].astype(int)
    table = table.sort_values(list(KEYS), kind="stable").reset_index(drop=True)
    table = add_increments(table)
    if settings.delta:
        table = _add_deltas(table)
    return table[order_columns(table.columns)]


def _add_deltas(table):
    """<group>delta_<feature>: value at fraction k minus the value at the organ's first fraction."""
    import pandas as pd

    cols = [c for c in table.columns if c.startswith(_DELTA_GROUPS)]
    # the baseline is the first fraction's own value (NaN when its scan is missing), broadcast per organ
    firstrow = table.groupby(["patient", "organ"], sort=False)["fraction"].transform("min") == table["fraction"]
    base = table[cols].where(firstrow).groupby([table["patient"], table["organ"]], sort=False).transform("max")
    deltas = table[cols].to_numpy(dtype=float) - base.to_numpy(dtype=float)
    names = [c.split("_", 1)[0] + "_delta_" + c.split("_", 1)[1] for c in cols]
    return pd.concat([table, pd.DataFrame(deltas, columns=names, index=table.index)], axis=1)


def order_columns(columns) -> list:
    """patient, organ, fraction, then the groups in GROUPS order (first-seen order inside a group)."""
    columns = list(columns)
    out = [c for c in KEYS if c in columns]
    for g in GROUPS:
        out += [c for c in columns if c.startswith(g) and c not in out]
    out += [c for c in columns if c not in out]
    return out
