"""Which patients each evaluation fold holds out: leave-one-patient-out or grouped K-fold.

A patient is the unit of every fold (all organs and fractions of a patient are held out together), so
nothing of a held-out patient reaches a fitted step. "lopo" holds out one patient per fold in sorted
order; "group-kfold:K" shuffles the sorted patients with the seed and deals them into K folds of sizes
differing by at most one, so the folds are the same for the same patients and seed on any machine.
Without a choice ("auto"), cohorts up to AUTO_LOPO_MAX_PATIENTS patients get LOPO and larger ones
group-kfold:AUTO_K (why: docs/twin.md, "Cross-validation scheme").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from COMPASSLib.errors import InputError

# LOPO costs one twin fit per patient: 100 fits is ~10 minutes of one core for the default twin, 1,000 would
# be 1,000 fits for an estimate that 10 folds give with 90 % of the patients in every training set.
AUTO_LOPO_MAX_PATIENTS = 100
AUTO_K = 10


@dataclass
class CvPlan:
    scheme: str          # "lopo" | "group-kfold"
    k: int               # number of folds
    folds: list          # [[patient, ...] held out in fold i]
    reason: str

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "k": self.k, "folds": [list(f) for f in self.folds], "reason": self.reason}


def parse_cv(text):
    """("lopo", None) | ("group-kfold", K) | ("auto", None) from "lopo", "group-kfold:K", "auto" or None."""
    if text is None or text == "auto":
        return "auto", None
    if text == "lopo":
        return "lopo", None
    scheme, _, k = str(text).partition(":")
    if scheme == "group-kfold" and k.isdigit() and int(k) >= 2:
        return "group-kfold", int(k)
    raise InputError(f"cross-validation must be 'lopo', 'group-kfold:K' (K a whole number >= 2) or 'auto', "
                     f"got {text!r}")


def plan_folds(patients, cv=None, seed=0) -> CvPlan:
    """The folds for these patients (any order; duplicates ignored) under `cv` (parse_cv's forms)."""
    patients = sorted({str(p) for p in patients})
    n = len(patients)
    scheme, k = parse_cv(cv)
    if scheme == "auto":
        if n <= AUTO_LOPO_MAX_PATIENTS:
            scheme, reason = "lopo", (f"default for cohorts up to {AUTO_LOPO_MAX_PATIENTS} patients "
                                      f"({n} patients): every patient held out alone")
        else:
            scheme, k = "group-kfold", AUTO_K
            reason = (f"default above {AUTO_LOPO_MAX_PATIENTS} patients ({n} patients): {AUTO_K} grouped folds "
                      f"cost {AUTO_K} twin fits instead of {n}")
    else:
        reason = "chosen by the run settings (cv)"
    if scheme == "lopo":
        return CvPlan("lopo", n, [[p] for p in patients], reason)
    if k > n:
        raise InputError(f"group-kfold:{k} needs at least {k} patients with outcomes, the cohort has {n}")
    order = np.random.default_rng(seed).permutation(n)
    folds = [sorted(patients[i] for i in part) for part in np.array_split(order, k)]
    return CvPlan("group-kfold", k, folds, reason)
