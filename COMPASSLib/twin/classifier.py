"""Logistic regression on the latent state after fraction k (+ the organ code), its bootstrap
ensemble for risk intervals, and the training-chosen warning threshold. Kept as plain arrays so it
saves as JSON and runs in torch for explanations.

Why all prefixes: the classifier is trained on the latent state after EVERY fraction of each training
trajectory, each labelled with the trajectory's eventual outcome, one vote per trajectory shared out over its
fractions (model.CompassTwin prefix_weight: in proportion to the fraction number by default). Scoring
happens after every fraction, so the classifier must have seen early states; trained on final states only it would extrapolate for early fractions and over-warn.
"""
from __future__ import annotations

import logging

import numpy as np

from COMPASSLib.errors import ModelError

log = logging.getLogger(__name__)


class LatentLogistic:
    def __init__(self, C=1.0, n_bootstrap=50, seed=0):
        self.C = C
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def fit(self, features, y, weights, groups):
        """features (n, d) rows, y (n,), weights (n,), groups (n,) patient of each row."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y).astype(int)
        self.mean_ = features.mean(axis=0)
        self.std_ = np.where(features.std(axis=0) > 1e-9, features.std(axis=0), 1.0)
        z = (features - self.mean_) / self.std_
        if len(np.unique(y)) < 2:
            # A fold (or a tiny cohort) whose training trajectories all share one outcome: nothing to
            # learn, so predict that outcome's rate (as sklearn's DummyClassifier would), not fail.
            log.warning("all training trajectories have outcome %d: the classifier predicts a constant", y[0])
            rate = np.clip(y.mean(), 0.01, 0.99)
            self.coef_, self.intercept_ = np.zeros(z.shape[1]), float(np.log(rate / (1 - rate)))
            self.boot_coef_, self.boot_intercept_ = np.zeros((0, z.shape[1])), np.zeros(0)
            return self

        def one(idx):
            lr = LogisticRegression(C=self.C, max_iter=2000)
            lr.fit(z[idx], y[idx], sample_weight=weights[idx])
            return lr.coef_[0].copy(), float(lr.intercept_[0])

        self.coef_, self.intercept_ = one(np.arange(len(y)))
        # Patient-level bootstrap of the classifier: the spread of its predictions is the risk CI.
        rng = np.random.default_rng(self.seed)
        patients = np.unique(groups)
        rows_of = {p: np.flatnonzero(groups == p) for p in patients}
        coefs, icpts = [], []
        for _ in range(self.n_bootstrap):
            idx = np.concatenate([rows_of[p] for p in rng.choice(patients, len(patients))])
            if len(np.unique(y[idx])) < 2:
                continue
            c, i = one(idx)
            coefs.append(c)
            icpts.append(i)
        self.boot_coef_ = np.array(coefs).reshape(-1, len(self.coef_))
        self.boot_intercept_ = np.array(icpts)
        return self

    def logit(self, features):
        return ((features - self.mean_) / self.std_) @ self.coef_ + self.intercept_

    def predict_proba(self, features):
        return _sigmoid(self.logit(features))

    def ensemble_proba(self, features):
        """(n, members): the risk of every bootstrap member; the point risk as one member where there is
        no ensemble (twin.whatif pools these with forecast draws)."""
        if len(self.boot_intercept_) == 0:
            return self.predict_proba(features)[:, None]
        z = (features - self.mean_) / self.std_
        return _sigmoid(z @ self.boot_coef_.T + self.boot_intercept_)

    def interval(self, features, level=0.95):
        """(low, high) of the bootstrap ensemble's risk; the point risk where there is no ensemble."""
        if len(self.boot_intercept_) == 0:
            p = self.predict_proba(features)
            return p, p
        ps = self.ensemble_proba(features)
        a = (1 - level) / 2
        return np.quantile(ps, a, axis=1), np.quantile(ps, 1 - a, axis=1)

    def to_dict(self):
        return {"C": self.C, "n_bootstrap": self.n_bootstrap, "seed": self.seed,
                "mean": self.mean_.tolist(), "std": self.std_.tolist(), "coef": self.coef_.tolist(),
                "intercept": self.intercept_, "boot_coef": self.boot_coef_.tolist(),
                "boot_intercept": self.boot_intercept_.tolist()}

    @classmethod
    def from_dict(cls, d):
        c = cls(d["C"], d["n_bootstrap"], d["seed"])
        c.mean_ = np.asarray(d["mean"], float)
        c.std_ = np.asarray(d["std"], float)
        c.coef_ = np.asarray(d["coef"], float)
        c.intercept_ = float(d["intercept"])
        c.boot_coef_ = np.asarray(d["boot_coef"], float).reshape(-1, len(c.coef_))
        c.boot_intercept_ = np.asarray(d["boot_intercept"], float)
        return c


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


THRESHOLD_RULES = ("youden", "sensitivity")


def choose_threshold(y, p, rule, target_sensitivity):
    """Warning threshold from training predictions: the highest threshold that still reaches
    `target_sensitivity` ("sensitivity"), or Youden's J, max sensitivity + specificity - 1 ("youden").
    The defaults are CompassTwin's (threshold_rule, target_sensitivity)."""
    from sklearn.metrics import roc_curve

    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.minimum(thr, 1.0)  # roc_curve puts inf first
    if rule == "youden":
        return float(thr[int(np.argmax(tpr - fpr))])
    if rule == "sensitivity":
        return float(thr[int(np.flatnonzero(tpr >= target_sensitivity)[0])])
    raise ModelError(f"unknown threshold rule {rule!r} ({' or '.join(THRESHOLD_RULES)})")
