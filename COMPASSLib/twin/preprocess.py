"""Column selection and standardisation, fitted on training trajectories only (inside every LOPO fold).

Selection drops what cannot inform a model fitted on a handful of patients: columns mostly missing or
constant in the training rows; then, when there are more columns than `max_features`, keeps those whose
value at the last fraction separates the training labels best (univariate ANOVA F, the same statistic
scikit-learn's SelectKBest uses). Values are z-scored with the training mean/std; missing values become
0 (the training mean) and are masked out of the reconstruction loss.
"""
from __future__ import annotations

import numpy as np


class Preprocessor:
    def __init__(self, max_nan_fraction=0.5, max_features=None):
        self.max_nan_fraction = max_nan_fraction
        self.max_features = max_features

    def fit(self, X, lengths, columns, y):
        """X (N, T, F) training trajectories, y (N,) labels."""
        rows = _valid_rows(X, lengths)
        with np.errstate(all="ignore"):
            nan_frac = np.isnan(rows).mean(axis=0) if len(rows) else np.ones(len(columns))
            std = np.nanstd(rows, axis=0)
        keep = (nan_frac <= self.max_nan_fraction) & np.isfinite(std) & (std > 1e-9)
        idx = np.flatnonzero(keep)
        if self.max_features and len(idx) > self.max_features and len(np.unique(y)) == 2:
            last = X[np.arange(len(X)), lengths - 1][:, idx]
            idx = idx[np.argsort(-_f_scores(last, y), kind="stable")[: self.max_features]]
            idx.sort()
        self.columns_ = [columns[i] for i in idx]
        self.mean_ = np.nanmean(rows[:, idx], axis=0).astype(np.float64)
        self.std_ = np.nanstd(rows[:, idx], axis=0).astype(np.float64)
        return self

    def transform(self, X, columns):
        """Standardised (N, T, F') float32 with missing -> 0, and the observed mask (N, T, F')."""
        pos = {c: i for i, c in enumerate(columns)}
        sub = X[:, :, [pos[c] for c in self.columns_]].astype(np.float64)
        z = (sub - self.mean_) / self.std_
        observed = np.isfinite(z)
        return np.where(observed, z, 0.0).astype(np.float32), observed

    def to_dict(self):
        return {"max_nan_fraction": self.max_nan_fraction, "max_features": self.max_features,
                "columns": list(self.columns_), "mean": self.mean_.tolist(), "std": self.std_.tolist()}

    @classmethod
    def from_dict(cls, d):
        p = cls(d["max_nan_fraction"], d["max_features"])
        p.columns_ = list(d["columns"])
        p.mean_ = np.asarray(d["mean"], dtype=np.float64)
        p.std_ = np.asarray(d["std"], dtype=np.float64)
        return p


def _valid_rows(X, lengths):
    mask = np.arange(X.shape[1])[None, :] < np.asarray(lengths)[:, None]
    return X[mask].astype(np.float64)


def _f_scores(values, y):
    """ANOVA F per column (two groups), NaN imputed with the column mean; 0 where undefined."""
    v = np.where(np.isnan(values), np.nanmean(values, axis=0), values)
    y = np.asarray(y)
    a, b = v[y == 1], v[y == 0]
    between = len(a) * (a.mean(0) - v.mean(0)) ** 2 + len(b) * (b.mean(0) - v.mean(0)) ** 2
    within = ((a - a.mean(0)) ** 2).sum(0) + ((b - b.mean(0)) ** 2).sum(0)
    with np.errstate(all="ignore"):
        f = between / (within / max(len(v) - 2, 1))
    return np.nan_to_num(f, nan=0.0, posinf=1e12)
