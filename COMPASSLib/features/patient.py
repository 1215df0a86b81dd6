"""The features of one patient, fraction by fraction, through the cache: what a worker process or a Dask
worker runs. It takes and returns plain data, and never raises for bad input: a CompassError becomes the
result's `error` and the other patients go on."""
from __future__ import annotations

import json
import logging
import time

from COMPASSLib.errors import CompassError
from COMPASSLib.features.cache import FEATURE_CODE_VERSION, FeatureCache, digest, fraction_digest, settings_json
from COMPASSLib.features.fraction import PatientContext, fraction_rows, needed_modalities
from COMPASSLib.features.settings import FeatureSettings, organs_to_score

log = logging.getLogger(__name__)


def extract_patient(cohort, patient_id: str, settings, cache_dir=None, organs=None) -> dict:
    """Features of every fraction of one patient. Returns {patient, rows, warnings, computed (fractions
    computed, not from cache), inputs (checksums per fraction), timings (per computed fraction), error}."""
    from COMPASSLib.cohort import Cohort

    settings = settings if isinstance(settings, FeatureSettings) else FeatureSettings.from_dict(settings)
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    out = {"patient": patient_id, "rows": [], "warnings": [], "computed": [], "inputs": {}, "timings": [],
           "error": None}
    from COMPASSLib.executors import one_thread

    try:
        with one_thread():   # the same numbers in-process, on a pool or a Dask worker; no oversubscription
            _extract(cohort, PatientContext(patient_id, list(organs or organs_to_score(settings, cohort)),
                                            settings), cache_dir, out)
    except CompassError as e:
        out["error"] = str(e.at(patient=patient_id))
        out["rows"] = []
    except Exception as e:  # a bug or a library failure for this patient: report it, let the others finish
        log.exception("feature extraction failed for patient %s", patient_id)
        out["error"] = f"unexpected {type(e).__name__}: {e} [patient {patient_id}]"
        out["rows"] = []
    return out


def _missing_file(cohort, fraction):
    for m in ("dose", "ct", "pet", "rtstruct"):
        for f in fraction.files(m):
            if not cohort.path(f).is_file():
                return m, cohort.path(f)
    return None


def _check_fraction(cohort, ctx, frac) -> None:
    from COMPASSLib.errors import InputError

    missing = _missing_file(cohort, frac)
    if missing:
        raise InputError(f"{missing[0]} file of the fraction is missing", file=missing[1], patient=ctx.patient_id,
                         fraction=frac.index)
    if not frac.dose:
        raise InputError("fraction has no dose file in the manifest", patient=ctx.patient_id, fraction=frac.index)


def _extract(cohort, ctx: PatientContext, cache_dir, out) -> None:
    from COMPASSLib.ingest import PatientLoader

    patient = cohort.patient(ctx.patient_id)
    if not patient.fractions:
        from COMPASSLib.errors import InputError

        raise InputError("patient has no fractions in the manifest", file=cohort.root / "cohort.json",
                         patient=ctx.patient_id)
    # one loader per patient: the reference grid and each structure file are read once, not per fraction
    loader = PatientLoader(cohort, ctx.patient_id, reference=ctx.settings.reference,
                           modalities=needed_modalities(ctx.settings), organs=ctx.organs)
    planning = fraction_digest(cohort, patient.planning) if patient.planning else ""
    chain = digest(settings_json(ctx.settings), FEATURE_CODE_VERSION, json.dumps(sorted(ctx.organs)),
                   json.dumps(patient.organs, sort_keys=True), planning)
    cache = FeatureCache(cache_dir, ctx.patient_id)
    prev_key, prev_maps = None, None
    for frac in patient.fractions:
        k = frac.index
        _check_fraction(cohort, ctx, frac)
        fd = fraction_digest(cohort, frac)
        out["inputs"][str(k)] = fd
        key = digest(chain, fd)
        cached = cache.load_rows(key)
        if cached is not None:
            rows = cached["rows"]
            out["warnings"] += cached["warnings"]
            for r in rows:   # shape is per organ from the first fraction: keep it for later fractions
                ctx.shape.setdefault(r["organ"], {c: v for c, v in r.items() if c.startswith("shape_")})
            prev_maps = None   # loaded lazily from this entry if the next fraction must be computed
        else:
            if prev_maps is None and prev_key is not None:
                prev_maps = cache.load_maps(prev_key)
            rows, prev_maps = _compute(ctx, k, loader, prev_maps, out)
            cache.save(key, {"rows": rows, "warnings": list(ctx.warnings)}, prev_maps)
            out["warnings"] += ctx.warnings
        prev_key = key
        out["rows"] += rows
        chain = key


def _compute(ctx, k, loader, prev_maps, out):
    t_start = time.perf_counter()
    images = loader.load(k)
    timings = {"patient": ctx.patient_id, "fraction": k, "io_s": time.perf_counter() - t_start,
               "kinetics_s": 0.0, "radiomics_s": 0.0, "texture_s": 0.0}
    ctx.warnings = []
    try:
        rows, state = fraction_rows(ctx, k, images, prev_maps, timings)
    except CompassError as e:
        raise e.at(patient=ctx.patient_id, fraction=k)
    timings["total_s"] = time.perf_counter() - t_start
    out["computed"].append(k)
    out["timings"].append(timings)
    return rows, state
