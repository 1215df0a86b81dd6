"""Cross-validation (leave-one-patient-out or grouped K-fold, twin.folds) of the twin and its baselines,
and the metrics of the main job.

Every fitted step lives inside the fold: `fit_fold` drops the held-out patients' rows before anything
sees the table, then fits the whole CompassTwin (selection, scaler, autoencoder, classifier, threshold)
and the mean-dose regression on the rest. Per trajectory the held-out risk after its last fraction
gives AUC, Brier, calibration (table, slope and intercept), and, against the fold's threshold, sensitivity and specificity; the
first fraction whose held-out risk reaches the threshold is the warning, and onset - warning the lead
time. 95 % CIs: percentile bootstrap over patients (all organs of a patient resampled together),
whichever folds made the held-out risks. The folds are independent tasks (`fold_predictions`) of a
COMPASSLib.executors.Executor: in this process, a local pool or a Dask cluster, with the same results.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from COMPASSLib.errors import ModelError
from COMPASSLib.progress import report
from COMPASSLib.twin.baselines import MeanDoseLogistic, lkb_ntcp, mean_dose_column
from COMPASSLib.twin.model import CompassTwin
from COMPASSLib.twin.trajectories import check_table, labels_frame

log = logging.getLogger(__name__)


@dataclass
class LopoResult:
    per_fraction: object     # DataFrame: patient, organ, fraction, risk, threshold, warning, lkb_ntcp, mean_dose_risk
    trajectories: object     # DataFrame: one row per (patient, organ) with label, onset, final risks, lead time
    baselines: dict          # what the baselines used (columns, parameter sets)
    cv: dict = None          # the folds (twin.folds.CvPlan.to_dict): scheme, k, folds, reason
    task_stats: list = None  # per fold: seconds and peak memory where it ran (COMPASSLib.executors.Done.stats)


def last_rows(table):
    return table.sort_values("fraction").groupby(["patient", "organ"], sort=False).tail(1)


# fewer cannot train on all but one and still see both outcomes in most folds
MIN_PATIENTS = 3


def _held_set(held_out) -> set:
    return {str(held_out)} if isinstance(held_out, (str, int)) else {str(p) for p in held_out}


def fit_fold(table, labels, held_out, params):
    """The fold's fitted twin: trained on every patient except `held_out` (a patient id or a collection of
    them; never sees their rows or outcomes)."""
    held = _held_set(held_out)
    train = table[~table["patient"].astype(str).isin(held)]
    return CompassTwin(**params).fit(train, labels[~labels["patient"].isin(held)])


def fold_predictions(source, labels, held_out, params, dose_col):
    """One fold as a task (COMPASSLib.executors): the held-out patients' per-fraction risks of the twin
    and the mean-dose baseline fitted on the others. `source`: the keyed table (with lkb_ntcp) or the path
    of its parquet copy, read once per worker process (a fold task never carries the table itself)."""
    from COMPASSLib.executors import one_thread

    table = _table_from(source)
    held = _held_set(held_out)
    is_test = table["patient"].isin(held)
    with one_thread():   # wherever the fold runs: the same sums in the same order, so the same bits
        twin = fit_fold(table, labels, held, {**params, "n_bootstrap": 0})  # risk CIs: final model only
        test = table[is_test]
        risk = twin.risk_trajectory(test, explain=False)
        train_last = last_rows(table[~is_test]).merge(labels, on=["patient", "organ"])
        md = MeanDoseLogistic(dose_col).fit(train_last, train_last["label"])
        test_sorted = test.sort_values(["patient", "organ", "fraction"])
        return risk.merge(test_sorted[["patient", "organ", "fraction", "lkb_ntcp"]].assign(
            mean_dose_risk=md.predict_proba(test_sorted)), on=["patient", "organ", "fraction"])


_read_tables: dict = {}


def _table_from(source):
    """The table itself, or the parquet file at `source` (kept for the next fold of this process)."""
    import os

    if not isinstance(source, (str, os.PathLike)):
        return source
    import pandas as pd

    st = os.stat(source)
    key = (os.fspath(source), st.st_mtime_ns, st.st_size)
    if key not in _read_tables:
        _read_tables.clear()                 # one table per worker at a time: memory stays bounded
        _read_tables[key] = pd.read_parquet(source)
    return _read_tables[key]


def lopo(table, outcomes, params=None, lkb_column=None, dose_column=None, progress=None, **kw) -> LopoResult:
    """Leave-one-patient-out: cross_validate with cv="lopo" (the other keywords are cross_validate's)."""
    return cross_validate(table, outcomes, params, lkb_column, dose_column, progress, cv="lopo", **kw)


def cross_validate(table, outcomes, params=None, lkb_column=None, dose_column=None, progress=None, cv=None,
                   seed=None, executor=None, work_dir=None) -> LopoResult:
    """Held-out risks of the twin and its baselines under the folds of `cv` (twin.folds.plan_folds:
    "lopo", "group-kfold:K", None = by cohort size; folds from `seed`, default the twin's seed). Each fold
    is a task of `executor` (COMPASSLib.executors.Executor; None: in this process); off this process the
    table goes to the workers as one parquet file in `work_dir` (default a temporary folder: give a path
    every worker can read on a real cluster), read once per worker."""
    import tempfile

    import pandas as pd

    from COMPASSLib.executors import using
    from COMPASSLib.twin.folds import plan_folds

    check_table(table)
    params = dict(params or {})
    labels = labels_frame(outcomes)
    table = table.assign(patient=table["patient"].astype(str), organ=table["organ"].astype(str))
    keyed = table.merge(labels[["patient", "organ"]], on=["patient", "organ"])
    patients = sorted(keyed["patient"].unique())
    if len(patients) < MIN_PATIENTS:
        raise ModelError(f"cross-validation needs at least {MIN_PATIENTS} patients with outcomes "
                         f"(got {len(patients)})")
    plan = plan_folds(patients, cv, params.get("seed", 0) if seed is None else seed)
    dose_col = mean_dose_column(list(table.columns), dose_column)
    lkb, lkb_info = lkb_ntcp(keyed.reset_index(drop=True), lkb_column)   # published parameters: nothing fitted
    keyed = keyed.reset_index(drop=True).assign(lkb_ntcp=lkb)
    with using(scheduler=executor) as ex, tempfile.TemporaryDirectory(dir=work_dir, prefix=".folds-") as tmp:
        source = keyed
        if ex.kind != "process":
            source = str(Path(tmp) / "table.parquet")
            keyed.to_parquet(source, index=False)
        frames, stats = [None] * plan.k, [None] * plan.k
        tasks = [(source, labels, fold, params, dose_col) for fold in plan.folds]
        for done in ex.run(fold_predictions, tasks, progress, "evaluation folds: {done}/{total}"):
            frames[done.index], stats[done.index] = done.value, done.stats
    per_fraction = pd.concat(frames, ignore_index=True).sort_values(["patient", "organ", "fraction"],
                                                                    ignore_index=True)
    return LopoResult(per_fraction, summarise_trajectories(per_fraction, labels),
                      {**lkb_info, "mean_dose_column": dose_col}, plan.to_dict(), stats)


def summarise_trajectories(per_fraction, labels):
    """One row per trajectory: final risks, label, onset, warning fraction and lead time."""
    last = last_rows(per_fraction)
    warned = per_fraction[per_fraction["warning"]].groupby(["patient", "organ"])["fraction"].min()
    out = last.merge(labels, on=["patient", "organ"]).set_index(["patient", "organ"])
    out["warning_fraction"] = warned.reindex(out.index)
    out["lead_time"] = np.where(out["label"] == 1, out["onset_fraction"] - out["warning_fraction"], np.nan)
    out["predicted"] = (out["risk"] >= out["threshold"]).astype(int)
    return out.reset_index().drop(columns=["warning", "top_features"], errors="ignore")


# --- metrics ---------------------------------------------------------------------------------------
def _auc(y, p):
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(p)
    y, p = y[ok], p[ok]
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else np.nan


def _point_metrics(t):
    y = t["label"].to_numpy(int)
    pred = t["predicted"].to_numpy(int)
    risk = t["risk"].to_numpy(float)
    pos, neg = y == 1, y == 0
    return {"auc": _auc(y, risk),
            "sensitivity": float(pred[pos].mean()) if pos.any() else np.nan,
            "specificity": float(1 - pred[neg].mean()) if neg.any() else np.nan,
            "brier": float(np.mean((risk - y) ** 2)),
            "lkb_auc": _auc(y, t["lkb_ntcp"].to_numpy(float)),
            "mean_dose_auc": _auc(y, t["mean_dose_risk"].to_numpy(float)),
            **dict(zip(("calibration_intercept", "calibration_slope"), calibration_fit(y, risk)))}


def calibration_fit(y, p):
    """(intercept a, slope b) of the logistic recalibration logit P(y = 1) = a + b logit(p), by maximum
    likelihood (Newton-Raphson); (nan, nan) where it has no finite answer (one outcome only, constant
    risks, or separated outcomes). b < 1: risks too extreme (overfitted), a != 0: too high or too low."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    ok = np.isfinite(p)
    y, p = y[ok], p[ok]
    x = np.log(p / (1 - p))
    if len(np.unique(y)) < 2 or np.ptp(x) < 1e-9:
        return np.nan, np.nan
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(100):
        with np.errstate(over="ignore"):   # a separating bootstrap resample: exp overflows to inf, mu to 0
            mu = 1 / (1 + np.exp(-(X @ beta)))
        hessian = X.T @ (X * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(hessian, X.T @ (y - mu))
        except np.linalg.LinAlgError:
            return np.nan, np.nan
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e6:
            return np.nan, np.nan
        if np.abs(step).max() < 1e-10:
            return float(beta[0]), float(beta[1])
    return np.nan, np.nan       # not converging: separated outcomes, the ML estimate is infinite


def calibration_table(y, p, bins=5):
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [{"bin": [float(edges[b]), float(edges[b + 1])], "n": int((which == b).sum()),
             "mean_predicted": float(p[which == b].mean()) if (which == b).any() else None,
             "observed_rate": float(y[which == b].mean()) if (which == b).any() else None}
            for b in range(bins)]


def metrics(result: LopoResult, n_bootstrap=1000, seed=0) -> dict:
    """metrics.json body: each headline metric as {"value", "ci95"} (calibration_slope/_intercept: the
    logistic recalibration of the held-out final risks, calibration_fit), plus cv (the folds), n_trajectories,
    lead_time_fractions, per-fraction AUC and the calibration table."""
    t = result.trajectories
    point = _point_metrics(t)
    rng = np.random.default_rng(seed)
    patients = t["patient"].unique()
    rows_of = {p: np.flatnonzero(t["patient"].to_numpy() == p) for p in patients}
    boots = {k: [] for k in point}
    lead_boot = []
    for _ in range(n_bootstrap):
        idx = np.concatenate([rows_of[p] for p in rng.choice(patients, len(patients))])
        s = t.iloc[idx]
        for k, v in _point_metrics(s).items():
            if np.isfinite(v):
                boots[k].append(v)
        lt = s["lead_time"].dropna()
        if len(lt):
            lead_boot.append(float(lt.median()))
    out = {k: {"value": _num(v), "ci95": _ci(boots[k])} for k, v in point.items()}
    out["n_trajectories"] = int(len(t))
    out["n_patients"] = int(len(patients))
    out["n_toxic"] = int(t["label"].sum())
    lead = t.loc[t["label"] == 1, "lead_time"]
    out["lead_time_fractions"] = {
        "value": _num(lead.median()) if lead.notna().any() else None, "ci95": _ci(lead_boot),
        "statistic": "median over toxic trajectories with a warning and a known onset",
        "values": [float(v) for v in lead.dropna()],
        "n_toxic": int((t["label"] == 1).sum()),
        "n_toxic_with_onset": int(((t["label"] == 1) & t["onset_fraction"].notna()).sum()),
        "n_toxic_never_warned": int(((t["label"] == 1) & t["warning_fraction"].isna()).sum())}
    pf = result.per_fraction.merge(t[["patient", "organ", "label"]], on=["patient", "organ"])
    out["per_fraction_auc"] = [
        {"fraction": int(k), "n": int(len(g)), "auc": _num(_auc(g["label"].to_numpy(int), g["risk"].to_numpy(float))),
         "lkb_auc": _num(_auc(g["label"].to_numpy(int), g["lkb_ntcp"].to_numpy(float))),
         "mean_dose_auc": _num(_auc(g["label"].to_numpy(int), g["mean_dose_risk"].to_numpy(float)))}
        for k, g in pf.groupby("fraction")]
    out["calibration"] = calibration_table(t["label"].to_numpy(int), t["risk"].to_numpy(float))
    out["baselines"] = result.baselines
    out["bootstrap"] = {"n": n_bootstrap, "seed": seed, "unit": "patient"}
    if result.cv is not None:
        out["cv"] = result.cv
    return out


def _num(v):
    return None if v is None or not np.isfinite(v) else float(v)


def _ci(values):
    if len(values) < 2:
        return [None, None]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]
