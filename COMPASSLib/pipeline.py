"""The main job and the living twin.

run(cohort, out_dir, settings): files -> feature table (ingest, BED, features; cached per fraction)
    -> cross-validation (leave-one-patient-out, or grouped K-fold for large cohorts) of the twin and its
    baselines -> final twin on all patients
    -> per-fraction risk of every patient/organ -> OUT/metrics.json, risk.csv, model/, report.html
    (+ features.csv, lopo_risk.csv, lopo_trajectories.csv that the report is drawn from; with
    `texture_maps`, voxelwise BED texture maps under OUT/texture/, listed in metrics.json). Outputs whole
    or absent: checked before any work, staged beside OUT and moved in at the end (atomic.staged_dir);
    only the feature cache (default OUT/cache) is written in place, entry by atomic entry.
score(model, cohort): every fraction of every patient scored by a saved twin with the feature settings it
    was trained with (the one scoring path: `update`, the batch script and the Slicer module use it).
update(model_dir, patient_dir): `score` of one patient's fractions so far (only fractions not in the
    cache are computed): current risk and warning per organ.

Every long call takes `progress` (COMPASSLib.progress: progress(fraction_done, message), False cancels).
"""
from __future__ import annotations

import logging
from pathlib import Path

from COMPASSLib.errors import FeatureError, InputError
from COMPASSLib.progress import report, scaled

log = logging.getLogger(__name__)

DEFAULTS = {
    "profile": None,            # feature profile fast | full; None: the settings file's, else full
    "feature_settings": None,   # YAML/JSON feature settings file; `profile` wins over its profile
    # Where the heavy steps run (COMPASSLib.executors: per-patient features, evaluation folds, texture maps
    # per patient; the final fit's bootstrap refits stay here, see docs/scaling.md): `workers` spawned
    # processes of this machine, or the Dask cluster of `scheduler` (address or Client); the same results.
    "workers": 1,
    "scheduler": None,
    # Cross-validation: "lopo", "group-kfold:K" or None (LOPO up to twin.folds.AUTO_LOPO_MAX_PATIENTS
    # patients, grouped 10-fold above); folds from the twin's seed; recorded in metrics.json "cv".
    "cv": None,
    "cache_dir": None,          # feature cache; default OUT/cache (compass update finds it there)
    "twin": {},                 # CompassTwin keyword settings (epochs, device, seed, organ_mode, ...)
    "n_bootstrap": 1000,        # patient-level bootstrap resamples for the metrics' 95 % CIs
    "lkb_column": None,         # gEUD column for LKB (default: found by name, see twin.baselines)
    "dose_column": None,        # mean-dose column for the mean-dose baseline
    # Voxelwise BED texture maps written as NRRD (features.texture_summary.write_cohort_maps): a list of
    # organs, "all" (scored organs) or "warned" (per patient, the organs the final twin warned for); None: none (off by default: 3 maps per organ, fraction and patient
    # cost disk and, at fine grids with many grey levels, seconds each). Parameters: the feature settings'
    # `texture` (or its defaults when the profile has none).
    "texture_maps": None,
    "texture_fractions": None,  # fractions to map (list of indices); None: all
    "texture_device": "cpu",    # torch device for the maps
    # What if for the report: for each warned organ of the final twin, the rest of the course after the
    # patient's first warning projected as planned and with the organ's remaining dose scaled by this
    # factor (twin.whatif.warned_projections -> OUT/whatif_warned.csv); None: none.
    "whatif_sparing": 0.7,
}


def resolve_settings(settings=None) -> dict:
    settings = dict(settings or {})
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise InputError(f"unknown run setting(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **settings}
    out["twin"] = dict(out["twin"] or {})
    _check_counts(out)
    return out


def _whole(value, low, what):
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InputError(f"{what} must be a whole number >= {low}, got {value!r}")


def _check_counts(settings) -> None:
    """Counts that would run silently wrong: 0 training epochs (an untrained twin scores at random), a
    negative number of bootstrap resamples, fewer than one worker."""
    _whole(settings["workers"], 1, "workers (--workers)")
    _whole(settings["n_bootstrap"], 0, "bootstrap resamples (--bootstrap)")
    f = settings["whatif_sparing"]
    if f is not None and (isinstance(f, bool) or not isinstance(f, (int, float)) or not f >= 0):
        raise InputError(f"what-if sparing factor (--whatif-sparing) must be a number >= 0 or none, got {f!r}")
    from COMPASSLib.twin.folds import parse_cv

    parse_cv(settings["cv"])
    if settings["twin"].get("epochs") is not None:
        _whole(settings["twin"]["epochs"], 1, "autoencoder training epochs (--epochs)")


def feature_settings(settings):
    from COMPASSLib.features.settings import FeatureSettings

    if settings.get("feature_settings"):
        return FeatureSettings.load(settings["feature_settings"], profile=settings.get("profile"))
    return FeatureSettings(profile=settings.get("profile") or "full")


# risk.csv and the other tables: one precision wherever they are written
CSV_FLOAT_FORMAT = "%.10g"
RISK_CSV_COLUMNS = ["patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning", "top_features",
                    "threshold"]


def _write_csv(path, frame):
    from COMPASSLib.atomic import atomic_path

    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)


def check_outputs(out_dir, cache_dir=None, staged: bool = True) -> None:
    """The output folder (staged beside itself) and the feature cache folder can be written: InputError
    naming the path and what is wrong, before any work starts (COMPASSLib.atomic.check_output)."""
    from COMPASSLib.atomic import check_output

    if out_dir is not None:
        check_output(out_dir, "output folder", staged=staged)
    if cache_dir is not None:
        check_output(cache_dir, "feature cache folder")


def check_lopo_patients(cohort, outcomes) -> None:
    """Before any feature is computed: at least LOPO_MIN_PATIENTS patients of the cohort have outcome rows
    and a dose file in every fraction (a patient lacking one fails in feature extraction and is left out).
    Otherwise an InputError naming the outcomes file, the patients that count and those that do not."""
    from COMPASSLib.twin.evaluate import MIN_PATIENTS as LOPO_MIN_PATIENTS

    with_outcomes = {o.patient for o in outcomes}
    no_dose = {p.id: [f.index for f in p.fractions if not f.dose]
               for p in cohort.patients if not p.fractions or any(not f.dose for f in p.fractions)}
    usable = [pid for pid in cohort.patient_ids if pid in with_outcomes and pid not in no_dose]
    if len(usable) >= LOPO_MIN_PATIENTS:
        return
    parts = [f"usable: {', '.join(usable) or 'none'}"]
    lacking = [pid for pid in cohort.patient_ids if pid not in with_outcomes]
    if lacking:
        parts.append(f"no outcome rows: {', '.join(lacking)}")
    if no_dose:
        parts.append("fractions without a dose file: " + "; ".join(
            f"{pid} (fraction {', '.join(map(str, ks))})" if ks else f"{pid} (no fractions)"
            for pid, ks in no_dose.items()))
    raise InputError(f"leave-one-patient-out needs at least {LOPO_MIN_PATIENTS} patients with outcomes and a "
                     f"dose in every fraction, the cohort has {len(usable)} ({'; '.join(parts)}); nothing was "
                     "computed", file=cohort.path(cohort.outcomes_file))


def run(cohort, out_dir, settings=None, progress=None, *, staging=None) -> dict:
    """The whole main job; returns the metrics written to OUT/metrics.json.

    Outputs whole or absent: the output folder and the feature cache are checked, the cohort and its
    outcomes read and the number of usable patients counted before any work starts; the job then writes
    into a staging folder beside OUT (`staging`, default a fresh one: COMPASSLib.atomic.staged_dir) whose
    entries replace OUT's only when everything is written. A failed or cancelled run leaves OUT as it was,
    except the feature cache (default OUT/cache, written in place: its entries are atomic and keyed by
    content, so the next run reuses what this one computed)."""
    from COMPASSLib.atomic import staged_dir
    from COMPASSLib.cohort import Cohort

    settings = resolve_settings(settings)
    out = Path(out_dir)
    cache = Path(settings["cache_dir"] or out / "cache")
    check_outputs(out, cache)
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    outcomes = cohort.outcomes()
    if not outcomes:
        raise InputError("the cohort has no outcomes (outcomes.csv: patient, organ, grade, onset_fraction)",
                         file=cohort.path(cohort.outcomes_file))
    check_lopo_patients(cohort, outcomes)
    fs = feature_settings(settings)
    from COMPASSLib.executors import using

    with staged_dir(out, staging) as stage, using(settings["workers"], settings["scheduler"]) as executor:
        metrics = _run_staged(cohort, outcomes, stage, cache, fs, settings, progress, executor)
    if metrics["provenance"]["feature_failures"]:
        log.warning("patients left out (feature extraction failed): %s", metrics["provenance"]["feature_failures"])
    report(progress, 1.0, f"done: {out}")
    return metrics


def _step_record(t0, stats) -> dict:
    """Wall time of a step and its tasks' costs (measured where they ran: COMPASSLib.executors.measured)."""
    import time

    stats = list(stats)
    return {"seconds": time.perf_counter() - t0, "tasks": len(stats),
            "task_seconds": sum(s["seconds"] for s in stats),
            "max_task_peak_rss_bytes": max((s["peak_rss_bytes"] for s in stats), default=None)}


def _run_staged(cohort, outcomes, out, cache, fs, settings, progress, executor) -> dict:
    """The main job's work, every output written under `out` (the staging folder); the heavy steps run
    as tasks of `executor`, the rest here."""
    import time

    from COMPASSLib import report as report_html
    from COMPASSLib.atomic import write_json
    from COMPASSLib.executors import one_thread
    from COMPASSLib.features.table import extract_cohort
    from COMPASSLib.provenance import record, sha256_file
    from COMPASSLib.twin.evaluate import cross_validate, metrics as lopo_metrics
    from COMPASSLib.twin.model import CompassTwin
    from COMPASSLib.twin.trajectories import labels_frame

    # shares of the whole job, as measured on the default cohort (features dominate)
    report(progress, 0.0, f"features ({fs.profile} profile) for {len(cohort.patients)} patients")
    t0 = time.perf_counter()
    table = extract_cohort(cohort, fs, scheduler=executor, cache_dir=cache, progress=scaled(progress, 0.0, 0.6))
    steps = {"features": _step_record(t0, (table.attrs.get("task_stats") or {}).values())}
    failures = dict(table.attrs.get("failures") or {})
    if table.empty:
        raise FeatureError("no patient produced features: " + "; ".join(f"{p}: {m}" for p, m in failures.items()))
    _write_csv(out / "features.csv", table)

    report(progress, 0.6, "cross-validation")
    t0 = time.perf_counter()
    # the folds read the table from one parquet file in the staging folder (beside OUT: give OUT on storage
    # every worker can read when the cluster spans machines), never a copy of it per task
    result = cross_validate(table, outcomes, settings["twin"], settings["lkb_column"], settings["dose_column"],
                            progress=scaled(progress, 0.6, 0.85), cv=settings["cv"], executor=executor,
                            work_dir=out)
    steps["evaluation"] = _step_record(t0, result.task_stats or [])
    t0 = time.perf_counter()
    metrics = lopo_metrics(result, n_bootstrap=settings["n_bootstrap"], seed=settings["twin"].get("seed", 0))
    steps["metrics"] = _step_record(t0, [])

    report(progress, 0.85, "final twin on all patients")
    t0 = time.perf_counter()
    with one_thread():    # as in the folds: the same numbers in-process, on a pool or after Dask
        twin = CompassTwin(**settings["twin"]).fit(table, outcomes)
    twin.save(out / "model", extra={"feature_settings": fs.to_dict(), "cohort": str(cohort.root)})
    steps["final_fit"] = _step_record(t0, [])
    report(progress, 0.92, "risk after every fraction")
    t0 = time.perf_counter()
    with one_thread():
        risk = twin.risk_trajectory(table)
    steps["risk"] = _step_record(t0, [])
    risk = risk.merge(result.per_fraction[["patient", "organ", "fraction", "risk"]].rename(
        columns={"risk": "lopo_risk"}), on=["patient", "organ", "fraction"], how="left")
    _write_csv(out / "risk.csv", risk[RISK_CSV_COLUMNS + ["lopo_risk"]])
    from COMPASSLib.twin.explain import explanation_shares

    metrics["explanations"] = explanation_shares(risk, labels_frame(outcomes))
    _write_csv(out / "lopo_risk.csv", result.per_fraction)
    _write_csv(out / "lopo_trajectories.csv", result.trajectories)

    if settings["texture_maps"]:
        from COMPASSLib.features.texture_summary import map_settings, write_cohort_maps

        report(progress, 0.94, "texture maps")
        t0 = time.perf_counter()
        organs = settings["texture_maps"]
        if organs in ("warned", ["warned"]):
            warned = risk[risk["warning"].astype(bool)]
            organs = {p: sorted(set(g["organ"])) for p, g in warned.groupby("patient")}
        metrics["texture_maps"] = {
            "settings": map_settings(fs), "device": settings["texture_device"],
            "maps": write_cohort_maps(cohort, out, fs, organs, settings["texture_fractions"],
                                      device=settings["texture_device"],
                                      progress=scaled(progress, 0.94, 0.99), executor=executor)}
        steps["texture_maps"] = _step_record(t0, [])

    if settings["whatif_sparing"] is not None:
        from COMPASSLib.twin.whatif import warned_projections

        report(progress, 0.99, "what if: the warned organs spared")
        t0 = time.perf_counter()
        # one task per warned patient; the workers read the saved model and the table from the staging folder
        projected = warned_projections(str(out / "model"), cohort, risk, settings["whatif_sparing"],
                                       cache_dir=cache, training=str(out / "features.csv"),
                                       seed=settings["twin"].get("seed", 0), executor=executor,
                                       progress=scaled(progress, 0.99, 1.0))
        if len(projected):
            _write_csv(out / "whatif_warned.csv", projected)
        metrics["whatif_warned"] = {"sparing": settings["whatif_sparing"], "rows": int(len(projected)),
                                    "file": "whatif_warned.csv" if len(projected) else None}
        steps["whatif"] = _step_record(t0, projected.attrs.get("task_stats") or [])

    manifest = cohort.root / "cohort.json"
    metrics["cohort"] = str(cohort.root.resolve())   # where the report and `compass view` find the images
    metrics["provenance"] = record(
        {"run": {**{k: v for k, v in settings.items() if k != "twin"}, "scheduler": _address(settings["scheduler"])},
         "twin": twin.get_params(), "features": fs.to_dict()},
        inputs={"cohort.json": sha256_file(manifest) if manifest.is_file() else None,
                "features": table.attrs.get("inputs", {})},
        feature_failures=failures, outcomes=len(labels_frame(outcomes)),
        executor={"kind": executor.kind, "workers": executor.workers}, steps=steps,
        feature_tasks=table.attrs.get("task_stats", {}))
    write_json(out / "metrics.json", metrics)
    report_html.write_report(out)
    return metrics


def _address(scheduler):
    """A scheduler setting as provenance records it: the address (of a Client's or an Executor's scheduler)."""
    from COMPASSLib.executors import Executor

    if isinstance(scheduler, Executor):
        return _address(scheduler.scheduler)
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    info = getattr(scheduler, "scheduler_info", None)
    return str(info()["address"]) if callable(info) else str(scheduler)


def load_patients(patient_dir):
    """A Cohort from a folder holding cohort.json, or from a scan of its DICOM files."""
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.scan import scan

    p = Path(patient_dir)
    if (p / "cohort.json").is_file() or p.suffix == ".json":
        return Cohort.load(p)
    return scan(p)


def write_subset(cohort, out_dir, fractions, patients=None) -> Path:
    """A copy of a cohort's manifest in `out_dir` holding only the first `fractions` fractions of the
    given patients (default all), with absolute paths to the same files: the state of a course on the
    day fraction `fractions` arrived (tests, benchmarks, replaying a course through `compass update`)."""
    from COMPASSLib.cohort import Cohort

    src = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    d = src.to_dict()
    d["patients"] = [p for p in d["patients"] if patients is None or p["id"] in patients]
    for p in d["patients"]:
        p["fractions"] = [f for f in p["fractions"] if f["index"] <= fractions]
        for f in p["fractions"] + ([p["planning"]] if p.get("planning") else []):
            for m in ("ct", "pet", "dose", "rtstruct"):
                f[m] = [str(src.path(x)) for x in f[m]]
    d["outcomes"] = str(src.path(src.outcomes_file))
    return Cohort.from_dict(d, root=out_dir).save(Path(out_dir) / "cohort.json")


def score(model, cohort, out_dir=None, workers: int = 1, cache_dir=None, device=None, progress=None):
    """Risk after every fraction of every patient/organ the twin knows (DataFrame in the risk.csv columns),
    from a saved twin (`model`: its folder, or a loaded CompassTwin) with the feature settings it was
    trained with. With `out_dir`, writes OUT/risk.csv; the feature cache is `cache_dir`, else OUT/cache,
    else the one beside the model folder (`compass run` filled it). Patients whose features fail are
    left out and listed in `risk.attrs["failures"]`; `risk.attrs["computed"]` says which fractions were
    computed now (the others came from the cache)."""
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.features.table import extract_cohort
    from COMPASSLib.twin.model import CompassTwin

    _whole(workers, 1, "workers (--workers)")
    if cache_dir is None:
        if out_dir is not None:
            cache_dir = Path(out_dir) / "cache"
        elif not isinstance(model, CompassTwin):
            cache_dir = Path(model).resolve().parent / "cache"
    check_outputs(out_dir, cache_dir, staged=False)   # risk.csv is one file, written atomically
    twin = model if isinstance(model, CompassTwin) else CompassTwin.load(model)
    if device is not None:
        twin.device = device
    cohort = cohort if isinstance(cohort, Cohort) else load_patients(cohort)
    fs = twin.feature_settings()
    report(progress, 0.0, f"features ({fs.profile} profile) for {len(cohort.patients)} patients")
    table = extract_cohort(cohort, fs, workers=workers, cache_dir=cache_dir, organs=twin.organs_,
                           progress=scaled(progress, 0.0, 0.9))
    failures = dict(table.attrs.get("failures") or {})
    if table.empty:
        raise FeatureError("no features for " + "; ".join(f"{p}: {m}" for p, m in failures.items()),
                           file=cohort.root)
    report(progress, 0.9, "scoring with the twin")
    risk = twin.risk_trajectory(table)[RISK_CSV_COLUMNS]
    risk.attrs.update(failures=failures, computed=dict(table.attrs.get("computed") or {}))
    if out_dir is not None:
        _write_csv(Path(out_dir) / "risk.csv", risk)
    report(progress, 1.0, "scored")
    return risk


def update(model_dir, patient_dir, cache_dir=None, workers=1, progress=None):
    """Risk after each patient's latest fraction per organ (DataFrame: the rows of risk.csv for the
    latest fraction), and the fractions computed now ({patient: [fractions]})."""
    if cache_dir is None:
        cache_dir = Path(model_dir).resolve().parent / "cache"   # the one `compass run` filled
    check_outputs(None, cache_dir)                                # before the patient folder is scanned
    risk = score(model_dir, load_patients(patient_dir), cache_dir=cache_dir, workers=workers, progress=progress)
    latest = risk.groupby(["patient", "organ"], sort=True).tail(1).reset_index(drop=True)
    return latest, risk.attrs["computed"]
