"""Baselines the twin is judged against, on the same trajectories and folds.

LKB: the published parameter set (COMPASSLib.ntcp, Resources/ntcp_lkb.yaml) of each organ whose gEUD
exponent n is the organ's own n (Resources/organs.yaml geud_n) -- so the feature table's gEUD column
(made with that n) is exactly the gEUD the set needs. The table's gEUD is of cumulative EQD2 when the
column says so, else of cumulative BED; gEUD is homogeneous of degree 1 and EQD2 = BED / (1 + 2/(a/b))
voxel by voxel within an organ, so gEUD(EQD2) = gEUD(BED) / (1 + 2/(a/b)). LKB fits nothing, so its
fold predictions are the same in every fold.

Mean dose: a one-feature logistic regression per organ on the organ's mean dose after the last
fraction, fitted on the fold's training trajectories.
"""
from __future__ import annotations

import logging

import numpy as np

from COMPASSLib.errors import ModelError

log = logging.getLogger(__name__)

# per-fraction values, increments and slopes are not cumulative dose
_SKIP = ("inc", "delta", "rate", "frac_", "_fx_")
MEAN_DOSE_COLUMNS = ("dvh_dose_mean_gy", "dvh_mean_gy")   # physical cumulative mean dose (features.kinetics)


def _find(columns, must, prefer=()):
    cands = [c for c in columns if all(m in c.lower() for m in must) and not any(s in c.lower() for s in _SKIP)]
    for p in prefer:
        for c in cands:
            if c.lower().startswith(p):
                return c
    return cands[0] if cands else None


def geud_column(columns, explicit=None):
    """(column, kind) with kind 'eqd2' or 'bed': the table's cumulative gEUD column."""
    if explicit:
        if explicit not in columns:
            raise ModelError(f"feature table lacks the LKB gEUD column {explicit!r}")
        return explicit, ("eqd2" if "eqd2" in explicit.lower() else "bed")
    c = _find(columns, ("geud", "eqd2"))
    if c:
        return c, "eqd2"
    c = _find(columns, ("geud",), prefer=("bed_", "dvh_"))
    if c:
        return c, "bed"
    raise ModelError("feature table has no gEUD column (e.g. bed_geud_gy) for the LKB baseline")


def mean_dose_column(columns, explicit=None):
    if explicit:
        if explicit not in columns:
            raise ModelError(f"feature table lacks the mean-dose column {explicit!r}")
        return explicit
    c = next((c for c in MEAN_DOSE_COLUMNS if c in columns), None) or _find(columns, ("mean", "gy"), prefer=("dvh_", "bed_"))
    if c is None:
        raise ModelError("feature table has no mean-dose column (e.g. dvh_mean_gy) for the baseline")
    return c


def lkb_set(organ):
    """The organ's published set whose n matches the organ's gEUD n; None when there is none."""
    from COMPASSLib import ntcp, resources

    try:
        n = resources.geud_n(organ)
    except KeyError:
        return None
    sets = [p for p in ntcp.sets_for_organ(organ) if abs(p.n - n) < 1e-9]
    return sets[0] if sets else None


def lkb_ntcp(table, column=None):
    """NTCP per row (NaN for organs without a published set), and a description of what was used."""
    from COMPASSLib import ntcp, resources

    col, kind = geud_column(list(table.columns), column)
    out = np.full(len(table), np.nan)
    used = {}
    for organ, idx in table.groupby(table["organ"].astype(str)).groups.items():
        p = lkb_set(organ)
        if p is None:
            continue
        scale = 1.0 if kind == "eqd2" else 1.0 / (1.0 + 2.0 / resources.alpha_beta(organ))
        pos = table.index.get_indexer(idx)
        out[pos] = [ntcp.lkb_from_geud(g * scale, p.td50_gy, p.m) if np.isfinite(g) else np.nan
                    for g in table.loc[idx, col].to_numpy(float)]
        used[organ] = p.name
    return out, {"geud_column": col, "geud_of": kind, "parameter_sets": used}


class MeanDoseLogistic:
    """Per-organ logistic regression on mean dose only (pooled over organs where an organ's training
    trajectories hold one class only)."""

    def __init__(self, column):
        self.column = column

    def fit(self, final_rows, y):
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y).astype(int)
        self.models_ = {}
        organs = final_rows["organ"].astype(str).to_numpy()
        dose = final_rows[self.column].to_numpy(float)
        ok = np.isfinite(dose)
        for o in [None, *sorted(set(organs))]:
            sel = ok & ((organs == o) if o else True)
            if len(np.unique(y[sel])) == 2:
                self.models_[o] = LogisticRegression(max_iter=1000).fit(dose[sel, None], y[sel])
        return self

    def predict_proba(self, rows):
        out = np.full(len(rows), np.nan)
        dose = rows[self.column].to_numpy(float)
        for i, o in enumerate(rows["organ"].astype(str)):
            m = self.models_.get(o) or self.models_.get(None)
            if m is not None and np.isfinite(dose[i]):
                out[i] = m.predict_proba([[dose[i]]])[0, 1]
        return out
