"""Benchmark: does the twin earn its place? Leave-one-patient-out on held-out synthetic cohorts, the twin
against its baselines and against the ceilings the generator's hidden truth allows.

For every seed a synthetic cohort is written (`compass synth`'s generator), its feature table computed by
the real feature code (the main job's `extract_cohort`, cached in the work folder so reruns only refit),
then the twin's LOPO evaluation (`twin.evaluate.lopo`, exactly what `compass run` does) and, on the same
trajectories and folds:
- LKB NTCP (published parameters) and the mean-dose logistic regression (as in metrics.json);
- every single numeric feature of the table as a one-feature logistic regression (with organ intercepts)
  fitted inside each fold, the feature chosen inside the fold by its training AUC: "best single feature";
- one raw number, nothing fitted: the organ's relative mean-SUV rise from its first to its last PET;
- that same number (and the CT change) as a one-input logistic regression fitted in the same folds, with
  and without balanced classes: what fitting alone costs in pooled LOPO AUC (`fitting_cost`);
- a logistic regression fitted in the same folds on inputs chosen by hand, with no selection: the measured
  response (log PET rise or CT change) with log mean BED and the organ, then plus the hidden hot-spot
  index, then the hidden radiosensitivity in place of the response ("fitted: ..." rows: what the features
  carry, against what the twin keeps of it);
- the ceilings from ground_truth.json (read here only, never by the pipeline): the hidden model's own
  probabilities, and its logit without the patient offset that no image or dose shows; and that logit as
  the one input of a logistic regression fitted in the same folds (the ceiling paying the fitting cost).

Printed per cohort and as mean +- SD over cohorts: AUC, Brier, sensitivity/specificity at the twin's
threshold, median lead time, the share of toxic trajectories never warned, per-fraction AUC.

    .venv/bin/python Testing/Benchmarks/bench_twin.py --work /tmp/bench_twin            # defaults below
    .venv/bin/python Testing/Benchmarks/bench_twin.py --paper-seeds 101-110 --large-seeds 201-203
    .venv/bin/python Testing/Benchmarks/bench_twin.py --readout ct --large-seeds 301-303 --paper-seeds none
    .venv/bin/python Testing/Benchmarks/bench_twin.py --twin '{"epochs": 100}'          # other twin settings

`--prepare-only` writes cohorts and feature tables and stops (to fill the cache in the background).
The DICOM files of a cohort are deleted once its feature table is written (`--keep-dicom` keeps them):
a full-size cohort is about 0.5 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

SHAPES = {"paper": dict(patients=8, fractions=5, size="full"),
          "large": dict(patients=40, fractions=5, size="small")}


def seeds(text):
    if text in (None, "", "none"):
        return []
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


# --- cohorts and feature tables ------------------------------------------------------------------
def cohort_dir(work, shape, seed, readout):
    return Path(work) / f"{shape}_{readout}_s{seed}"


def prepare(work, shape, seed, readout="pet", keep_dicom=False):
    """(feature table, outcomes DataFrame, ground truth) of one cohort, computed once per work folder."""
    import pandas as pd

    folder = cohort_dir(work, shape, seed, readout)
    table_file = folder / "features.parquet"
    if not table_file.is_file():
        from COMPASSLib.features.table import extract_cohort
        from COMPASSLib.synth import generate_cohort

        # Built in a folder of this process's own and renamed when whole: two benchmarks preparing the same
        # cohort at once each build their own copy (the same bytes), the first to finish is kept.
        staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        t0 = time.perf_counter()
        extra = {} if readout == "pet" else {"readout": readout}
        manifest = generate_cohort(staging / "cohort", seed=seed, **SHAPES[shape], **extra)
        t1 = time.perf_counter()
        table = extract_cohort(manifest, "full", cache_dir=staging / "cache")
        if table.attrs.get("failures"):
            raise SystemExit(f"{folder}: feature extraction failed for {table.attrs['failures']}")
        table.attrs = {}
        table.to_parquet(staging / table_file.name)
        for name in ("outcomes.csv", "ground_truth.json", "synth_provenance.json"):
            shutil.copy(staging / "cohort" / name, staging / name)
        if not keep_dicom:
            shutil.rmtree(staging / "cohort")
            shutil.rmtree(staging / "cache", ignore_errors=True)
        if folder.is_dir() and not table_file.is_file():
            shutil.rmtree(folder)                      # what a killed preparation of the old kind left
        try:
            staging.rename(folder)
        except OSError:                                # another process finished it first
            shutil.rmtree(staging, ignore_errors=True)
        print(f"  prepared {folder.name}: synth {t1 - t0:.0f} s, features {time.perf_counter() - t1:.0f} s",
              flush=True)
    table = pd.read_parquet(table_file)
    outcomes = pd.read_csv(folder / "outcomes.csv", dtype={"patient": str})
    truth = json.loads((folder / "ground_truth.json").read_text())
    return table, outcomes, truth


# --- the comparisons ---------------------------------------------------------------------------
def _auc(y, p):
    from sklearn.metrics import roc_auc_score

    y, p = np.asarray(y, int), np.asarray(p, float)
    ok = np.isfinite(p)
    return float(roc_auc_score(y[ok], p[ok])) if len(np.unique(y[ok])) == 2 else np.nan


def _brier(y, p):
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def twin_lopo(table, outcomes, params):
    """The twin, LKB and mean dose exactly as `compass run` evaluates them (metrics.json's numbers)."""
    from COMPASSLib.twin.evaluate import lopo, metrics

    result = lopo(table, outcomes, params)
    m = metrics(result, n_bootstrap=0)
    t = result.trajectories
    y = t["label"].to_numpy(int)
    lead = m["lead_time_fractions"]
    return {"auc": m["auc"]["value"], "brier": m["brier"]["value"], "sensitivity": m["sensitivity"]["value"],
            "specificity": m["specificity"]["value"], "lead_time": lead["value"],
            "never_warned": lead["n_toxic_never_warned"] / max(lead["n_toxic"], 1),
            "per_fraction_auc": {r["fraction"]: r["auc"] for r in m["per_fraction_auc"]},
            "lkb_auc": m["lkb_auc"]["value"], "lkb_brier": _brier(y, t["lkb_ntcp"]),
            "mean_dose_auc": m["mean_dose_auc"]["value"], "mean_dose_brier": _brier(y, t["mean_dose_risk"])}


def final_rows(table, outcomes):
    """Per trajectory with an outcome: its feature row after the last fraction, and the label."""
    from COMPASSLib.twin.trajectories import labels_frame

    labels = labels_frame(outcomes)
    last = table.sort_values("fraction").groupby(["patient", "organ"]).tail(1)
    last = last.assign(patient=last["patient"].astype(str)).merge(labels, on=["patient", "organ"])
    return last.sort_values(["patient", "organ"], ignore_index=True)


def best_single_feature(table, outcomes):
    """Every numeric feature alone (+ organ intercepts) as a logistic regression fitted in each LOPO fold;
    the fold's feature is the one with the best training AUC. Pooled held-out AUC and Brier, and how often
    each feature was chosen."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    from COMPASSLib.twin.trajectories import numeric_feature_columns

    last = final_rows(table, outcomes)
    y = last["label"].to_numpy(int)
    organs = sorted(last["organ"].unique())
    onehot = (last["organ"].to_numpy()[:, None] == np.array(organs)[None, :]).astype(float)
    columns = [c for c in numeric_feature_columns(table) if np.isfinite(last[c].to_numpy(float)).mean() > 0.5]
    values = last[columns].to_numpy(float)
    patients = last["patient"].to_numpy()
    pred, chosen = np.full(len(last), np.nan), {}
    for p in np.unique(patients):
        train, test = patients != p, patients == p
        best = (-1.0, None, None)
        for j, c in enumerate(columns):
            x = values[:, j]
            mu, sd = np.nanmean(x[train]), np.nanstd(x[train])
            if not np.isfinite(sd) or sd < 1e-12:
                continue
            X = np.column_stack([np.nan_to_num((x - mu) / sd), onehot])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lr = LogisticRegression(C=1.0, max_iter=500, fit_intercept=False).fit(X[train], y[train])
            a = _auc(y[train], lr.decision_function(X[train]))
            if a > best[0]:
                best = (a, c, lr.predict_proba(X[test])[:, 1])
        pred[test] = best[2]
        chosen[best[1]] = chosen.get(best[1], 0) + 1
    return {"auc": _auc(y, pred), "brier": _brier(y, pred), "chosen": chosen}


def change(table, rows, column, relative=True):
    """Per row of `rows` (patient, organ): the trajectory's change of `column` from its first to its last
    fraction, relative (the PET mean-SUV rise for pet_suv_mean) or in the column's unit (CT mean HU)."""
    g = table.sort_values("fraction").groupby(["patient", "organ"])[column]
    first, last = g.first(), g.last()
    rise = ((last - first) / (first.abs().clip(lower=1e-6) if relative else 1.0)).rename("rise").reset_index()
    rise["patient"] = rise["patient"].astype(str)
    return rows[["patient", "organ"]].merge(rise, on=["patient", "organ"], how="left")["rise"].to_numpy(float)


def raw_rise(table, outcomes, column, relative=True):
    """One raw number, nothing fitted: the organ's change of `column` from its first to its last fraction."""
    rows = final_rows(table, outcomes)
    return {"auc": _auc(rows["label"], change(table, rows, column, relative))}


def ceilings(truth, outcomes):
    """AUC of the hidden probabilities, and of the hidden logit without the patient offset (no image or
    dose shows it): what any model of these observables could reach at best."""
    import pandas as pd

    rows = pd.DataFrame([o for p in truth["patients"] for o in p["organs"]])
    labels = final_rows_labels(outcomes)
    rows = rows.merge(labels, on=["patient", "organ"])
    y = rows["label"].to_numpy(int)
    return {"hidden": _auc(y, rows["probability"]), "observable": _auc(y, rows["logit"] - rows["patient_risk"]),
            "hidden_brier": _brier(y, rows["probability"])}


def _lopo_logistic(X, y, patients, class_weight=None):
    """Pooled held-out AUC of a logistic regression on X fitted in each leave-one-patient-out fold
    (standardised on the fold's training rows, L2 with C = 1 as the twin's classifier; `class_weight`
    "balanced" as the twin's setting of that name)."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    pred = np.full(len(y), np.nan)
    for p in np.unique(patients):
        train, test = patients != p, patients == p
        mu, sd = X[train].mean(axis=0), X[train].std(axis=0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lr = LogisticRegression(C=1.0, max_iter=5000, class_weight=class_weight).fit((X[train] - mu) / sd,
                                                                                          y[train])
        pred[test] = lr.predict_proba((X[test] - mu) / sd)[:, 1]
    return _auc(y, pred)


def fitting_cost(table, outcomes):
    """The measured response alone (the relative PET mean-SUV rise, the CT mean-HU change), as a one-input
    logistic regression fitted in the same LOPO folds: with the unfitted rows above, what fitting alone
    costs. Nothing is selected and the input is the very number ranked unfitted, so every point lost is the
    pooled leave-one-out AUC's own bias: each fold's intercept and slope follow its training labels, so
    holding out a patient with toxic organs lowers that fold's risks (the fewer the patients, the larger).
    With balanced classes the intercept no longer follows the training prevalence."""
    rows = final_rows(table, outcomes)
    y, patients = rows["label"].to_numpy(int), rows["patient"].to_numpy()
    out = {}
    for name, column, relative in (("pet", "pet_suv_mean", True), ("ct", "ct_firstorder_Mean", False)):
        x = np.nan_to_num(change(table, rows, column, relative))[:, None]
        out[name] = _lopo_logistic(x, y, patients)
        out[name + "_balanced"] = _lopo_logistic(x, y, patients, class_weight="balanced")
    return out


def fitted_ceilings(table, outcomes, truth):
    """What a model fitted in the same LOPO folds gets from the few inputs that carry the signal, chosen by
    hand (so no selection cost): the measured response (log relative PET mean-SUV rise, or the CT mean-HU
    change) with log mean BED and the organ; the same plus the hidden hot-spot index (read from the
    ground truth: how much a dose feature that saw it would add); and the hidden log radiosensitivity in
    place of the measured response (what the measurement costs). Separates what the twin's representation
    loses from what the features do not carry."""
    import pandas as pd

    rows = final_rows(table, outcomes)
    hidden = pd.DataFrame([o for p in truth["patients"] for o in p["organs"]])
    hidden = rows[["patient", "organ"]].merge(hidden, on=["patient", "organ"], how="left")
    y, patients = rows["label"].to_numpy(int), rows["patient"].to_numpy()
    organs = sorted(rows["organ"].unique())
    onehot = (rows["organ"].to_numpy()[:, None] == np.array(organs)[None, :]).astype(float)
    ln_bed = np.log(rows["bed_mean_gy"].to_numpy(float) + 1e-3)
    pet = np.log(np.clip(change(table, rows, "pet_suv_mean"), 1e-3, None))
    ct = change(table, rows, "ct_firstorder_Mean", relative=False)
    hotspot = hidden["hotspot_index"].to_numpy(float)
    ln_s = np.log(hidden["radiosensitivity"].to_numpy(float))
    out = {}
    for name, response in (("pet", pet), ("ct", ct), ("hidden_s", ln_s)):
        base = np.column_stack([np.nan_to_num(response), ln_bed, onehot])
        out[name] = _lopo_logistic(base, y, patients)
        out[name + "_hotspot"] = _lopo_logistic(np.column_stack([base, hotspot]), y, patients)
    return out


def fitted_observable_ceiling(table, outcomes, truth):
    """The observable ceiling's own input (the hidden logit without the patient offset) as a one-input
    logistic regression fitted in the same LOPO folds: the ceiling once it pays the fitting cost that every
    fitted model pays (`fitting_cost`), so that the gap from it to a fitted model is information, not the
    pooled leave-one-out bias."""
    import pandas as pd

    rows = final_rows(table, outcomes)
    hidden = pd.DataFrame([o for p in truth["patients"] for o in p["organs"]])
    hidden = rows[["patient", "organ"]].merge(hidden, on=["patient", "organ"], how="left")
    x = (hidden["logit"] - hidden["patient_risk"]).to_numpy(float)[:, None]
    return _lopo_logistic(x, rows["label"].to_numpy(int), rows["patient"].to_numpy())


def final_rows_labels(outcomes):
    from COMPASSLib.twin.trajectories import labels_frame

    return labels_frame(outcomes)[["patient", "organ", "label"]]


def baselines(folder, table, outcomes, truth):
    """What does not depend on the twin's settings, computed once per cohort (kept in the work folder)."""
    cached = Path(folder) / "baselines.json"
    out = json.loads(cached.read_text()) if cached.is_file() else {}
    parts = {"single": lambda: best_single_feature(table, outcomes),
             "pet_rise": lambda: raw_rise(table, outcomes, "pet_suv_mean"),
             "ct_rise": lambda: raw_rise(table, outcomes, "ct_firstorder_Mean", relative=False),
             "ceiling": lambda: ceilings(truth, outcomes), "fitted": lambda: fitted_ceilings(table, outcomes, truth),
             "fitting_cost": lambda: fitting_cost(table, outcomes),
             "fitted_ceiling": lambda: fitted_observable_ceiling(table, outcomes, truth),
             "n": lambda: int(len(final_rows(table, outcomes)))}
    missing = [k for k in parts if k not in out]
    for k in missing:  # a cache written before a baseline was added gains it, the rest is reused
        out[k] = parts[k]()
    if missing:
        tmp = cached.with_name(f"{cached.name}.partial-{os.getpid()}")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, cached)
    return out


def evaluate(folder, table, outcomes, truth, params):
    return {"twin": twin_lopo(table, outcomes, params), **baselines(folder, table, outcomes, truth)}


# --- printing ------------------------------------------------------------------------------------
ROWS = [("twin AUC", ("twin", "auc")), ("twin Brier", ("twin", "brier")),
        ("twin sensitivity", ("twin", "sensitivity")), ("twin specificity", ("twin", "specificity")),
        ("twin median lead (fx)", ("twin", "lead_time")), ("toxic never warned", ("twin", "never_warned")),
        ("best single feature AUC (in-fold)", ("single", "auc")), ("best single feature Brier", ("single", "brier")),
        ("PET rise, unfitted, AUC", ("pet_rise", "auc")), ("CT rise, unfitted, AUC", ("ct_rise", "auc")),
        ("fitted: PET rise alone AUC", ("fitting_cost", "pet")),
        ("fitted: PET rise alone, balanced", ("fitting_cost", "pet_balanced")),
        ("fitted: CT change alone AUC", ("fitting_cost", "ct")),
        ("fitted: CT change alone, balanced", ("fitting_cost", "ct_balanced")),
        ("mean-dose LR AUC", ("twin", "mean_dose_auc")), ("mean-dose LR Brier", ("twin", "mean_dose_brier")),
        ("LKB AUC", ("twin", "lkb_auc")), ("LKB Brier", ("twin", "lkb_brier")),
        ("fitted: PET rise, BED, organ AUC", ("fitted", "pet")),
        ("fitted: PET rise ... + hidden hot-spot", ("fitted", "pet_hotspot")),
        ("fitted: CT change, BED, organ AUC", ("fitted", "ct")),
        ("fitted: CT change ... + hidden hot-spot", ("fitted", "ct_hotspot")),
        ("fitted: hidden ln s, BED, organ AUC", ("fitted", "hidden_s")),
        ("fitted: hidden ln s ... + hot-spot", ("fitted", "hidden_s_hotspot")),
        ("ceiling: hidden probability AUC", ("ceiling", "hidden")),
        ("ceiling: without patient offset AUC", ("ceiling", "observable")),
        ("ceiling: the same, fitted in the folds", ("fitted_ceiling",))]


def _get(r, path):
    v = r
    for k in path:
        v = v.get(k) if isinstance(v, dict) else None
    return np.nan if v is None else float(v)


def print_summary(shape, results):
    if not results:
        return
    names = [f"s{s}" for s, _ in results]
    print(f"\n== {shape}: {SHAPES[shape]['patients']} patients x {SHAPES[shape]['fractions']} fractions "
          f"({SHAPES[shape]['size']}), {len(results)} cohorts ==")
    print(f"{'':38s}{'mean':>7s}{'sd':>6s}  " + " ".join(f"{n:>6s}" for n in names))
    for label, path in ROWS:
        vals = np.array([_get(r, path) for _, r in results])
        if np.isnan(vals).all():
            continue
        print(f"{label:38s}{np.nanmean(vals):7.3f}{np.nanstd(vals):6.3f}  " + " ".join(f"{v:6.2f}" for v in vals))
    fractions = sorted({k for _, r in results for k in r["twin"]["per_fraction_auc"]})
    pf = [np.nanmean([_get(r, ("twin", "per_fraction_auc", k)) for _, r in results]) for k in fractions]
    print("twin AUC after fraction k (mean):     " + "  ".join(f"k={k}: {v:.3f}" for k, v in zip(fractions, pf)))
    chosen = {}
    for _, r in results:
        for c, n in r["single"]["chosen"].items():
            chosen[c] = chosen.get(c, 0) + n
    top = sorted(chosen.items(), key=lambda kv: -kv[1])[:5]
    print("single feature chosen in folds:       " + ", ".join(f"{c} ({n})" for c, n in top))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/bench_twin", help="cohorts and feature tables (reused)")
    ap.add_argument("--paper-seeds", default="1001-1010", help="8 x 5 full cohorts (e.g. 1001-1010, none)")
    ap.add_argument("--large-seeds", default="2001-2003", help="40 x 5 small cohorts")
    ap.add_argument("--readout", default="pet", choices=("pet", "ct"),
                    help="the generator's hidden radiosensitivity readout (compass synth --readout)")
    ap.add_argument("--twin", default="{}", help="CompassTwin settings as JSON (default: the twin's defaults)")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--keep-dicom", action="store_true")
    ap.add_argument("--json", help="also write every number to this file")
    args = ap.parse_args(argv)
    params = json.loads(args.twin)
    jobs = [("paper", s) for s in seeds(args.paper_seeds)] + [("large", s) for s in seeds(args.large_seeds)]
    data = {job: prepare(args.work, *job, args.readout, args.keep_dicom) for job in jobs}
    if args.prepare_only:
        return 0
    results = {"paper": [], "large": []}
    t0 = time.perf_counter()
    for (shape, seed), (table, outcomes, truth) in data.items():
        t = time.perf_counter()
        r = evaluate(cohort_dir(args.work, shape, seed, args.readout), table, outcomes, truth, params)
        results[shape].append((seed, r))
        print(f"  {shape} s{seed}: twin {r['twin']['auc']:.3f}  single {r['single']['auc']:.3f}  "
              f"pet-rise {r['pet_rise']['auc']:.3f}  LKB {r['twin']['lkb_auc']:.3f}  "
              f"ceiling {r['ceiling']['observable']:.3f}  ({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"\ntwin settings: {params or 'defaults'}; readout: {args.readout}; "
          f"evaluation {time.perf_counter() - t0:.0f} s")
    for shape in ("paper", "large"):
        print_summary(shape, results[shape])
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": params, "readout": args.readout, "results": {
            s: [{"seed": seed, **r} for seed, r in v] for s, v in results.items()}}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
