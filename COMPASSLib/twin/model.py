"""CompassTwin: feature table -> per-organ latent trajectories -> risk of toxicity after every fraction.

    scaler/selection (preprocess) -> GRU autoencoder (autoencoder) -> latent state after fraction k
    -> logistic regression (classifier) -> risk_k, bootstrap CI, warning at the training threshold,
    top contributing features (explain)

scikit-learn conventions: settings are the constructor's keyword arguments (`get_params`/`set_params`
from BaseEstimator, so `sklearn.base.clone` works), `fit(table, outcomes)`, `predict_proba(table)`
(one row per trajectory, columns P(no toxicity), P(toxicity) after the last fraction seen), and
`risk_trajectory(table)` for the risk after every fraction. `save(dir)` / `CompassTwin.load(dir)`
write safetensors + JSON (persistence); nothing is ever unpickled.

organ_mode "shared" (default) trains one autoencoder and one classifier for all organs with the organ
as a one-hot code; "organ" trains one of each per organ. See docs/twin.md for why shared is the default.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from COMPASSLib.errors import ModelError
from COMPASSLib.twin import autoencoder
from COMPASSLib.twin.classifier import THRESHOLD_RULES, LatentLogistic, choose_threshold
from COMPASSLib.twin.preprocess import Preprocessor
from COMPASSLib.twin.trajectories import (check_table, labels_frame, numeric_feature_columns, to_arrays,
                                          trajectory_keys)

log = logging.getLogger(__name__)

RISK_COLUMNS = ["patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning", "threshold"]


class CompassTwin(BaseEstimator):
    def __init__(self, latent_size=4, hidden_size=16, epochs=150, lr=0.01, weight_decay=1e-4,
                 batch_size=256, seed=0, device="cpu", organ_mode="shared", threshold_rule="sensitivity",
                 target_sensitivity=0.85, max_features=24, max_nan_fraction=0.5, C=1.0, n_bootstrap=50,
                 ig_steps=16, top_k=3, threads=1, supervision=0.0, balance=None, prefix_weight="linear",
                 class_weight=None):
        self.latent_size = latent_size
        self.hidden_size = hidden_size
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.organ_mode = organ_mode
        self.threshold_rule = threshold_rule
        self.target_sensitivity = target_sensitivity
        self.max_features = max_features
        self.max_nan_fraction = max_nan_fraction
        self.C = C
        self.n_bootstrap = n_bootstrap
        self.ig_steps = ig_steps
        self.top_k = top_k
        self.threads = threads
        self.supervision = supervision
        self.balance = balance
        self.prefix_weight = prefix_weight
        self.class_weight = class_weight

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, table, outcomes):
        """Fit on the feature table's trajectories that have an outcome (others are ignored)."""
        check_table(table)
        if self.organ_mode not in ("shared", "organ"):
            raise ModelError(f"organ_mode must be 'shared' or 'organ', not {self.organ_mode!r}")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ModelError(f"threshold_rule must be one of {', '.join(THRESHOLD_RULES)}, not {self.threshold_rule!r}")
        t = self.target_sensitivity
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise ModelError(f"target_sensitivity must be a number in (0, 1], not {t!r}")
        labels = labels_frame(outcomes).set_index(["patient", "organ"])
        columns = numeric_feature_columns(table)
        if not columns:
            raise ModelError("feature table has no numeric feature columns")
        keys = [k for k in trajectory_keys(table) if k in labels.index]
        if not keys:
            raise ModelError("no trajectory in the feature table has an outcome (patient/organ names "
                             "of outcomes.csv and the table must match)")
        organs = sorted({o for _, o in keys})
        groups = [organs] if self.organ_mode == "shared" else [[o] for o in organs]
        self.feature_names_in_ = np.array(columns, dtype=object)
        self.n_features_in_ = len(columns)
        self.parts_ = []
        for g in groups:
            gkeys = [k for k in keys if k[1] in g]
            y = labels.loc[gkeys, "label"].to_numpy(dtype=int)
            self.parts_.append(self._fit_part(table, columns, gkeys, g, y))
        return self

    def _fit_part(self, table, columns, keys, organs, y):
        X, lengths, _ = to_arrays(table, columns, keys)
        pre = Preprocessor(self.max_nan_fraction, self.max_features).fit(X, lengths, columns, y)
        if not pre.columns_:
            raise ModelError(f"no usable feature for organ(s) {organs}: all columns are constant or "
                             "mostly missing in the training rows")
        x, observed = pre.transform(X, columns)
        onehot = _onehot(keys, organs)
        with _deterministic(self.device, self.threads):
            ae, losses = autoencoder.train(
                x, observed, lengths, onehot, hidden_size=self.hidden_size, latent_size=self.latent_size,
                epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                batch_size=self.batch_size, seed=self.seed, device=self.device, labels=y,
                supervision=self.supervision, feature_weights=_feature_weights(pre.columns_, self.balance))
        z = autoencoder.latent(ae, x, onehot)
        rows, ti, tk = _state_rows(z, onehot, lengths)
        weights = _class_weights(y[ti], _prefix_weights(ti, tk, lengths, self.prefix_weight), self.class_weight)
        clf = LatentLogistic(self.C, self.n_bootstrap, self.seed).fit(
            rows, y[ti], weights, np.array([keys[i][0] for i in ti]))
        final = clf.predict_proba(_final_rows(z, onehot, lengths))
        threshold = choose_threshold(y, final, self.threshold_rule, self.target_sensitivity)
        return {"organs": list(organs), "preprocessor": pre, "autoencoder": ae, "classifier": clf,
                "threshold": threshold, "loss": losses[-1] if losses else None}

    # --- scoring ------------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "parts_"):
            raise ModelError("the twin is not fitted (call fit or CompassTwin.load)")

    @property
    def used_features_(self) -> list:
        self._check_fitted()
        seen = []
        for p in self.parts_:
            seen += [c for c in p["preprocessor"].columns_ if c not in seen]
        return seen

    @property
    def organs_(self) -> list:
        self._check_fitted()
        return [o for p in self.parts_ for o in p["organs"]]

    def risk_trajectory(self, table, explain=True):
        """DataFrame patient, organ, fraction, risk, ci_low, ci_high, warning, threshold
        (+ top_features when `explain`), for every trajectory of an organ the twin knows."""
        import pandas as pd

        self._check_scorable(table)
        frames = []
        skipped = sorted(set(table["organ"].astype(str)) - set(self.organs_))
        if skipped:
            log.info("no twin for organ(s) %s: not scored", skipped)
        with _deterministic("cpu", self.threads):
            for part in self.parts_:
                keys = [k for k in trajectory_keys(table) if k[1] in part["organs"]]
                if keys:
                    frames.append(self._score_part(part, table, keys, explain))
        if not frames:
            raise ModelError(f"the feature table has no organ the twin knows ({', '.join(self.organs_)})")
        return pd.concat(frames, ignore_index=True).sort_values(["patient", "organ", "fraction"],
                                                                ignore_index=True)

    def _check_scorable(self, table):
        self._check_fitted()
        check_table(table)
        missing = [c for c in self.used_features_ if c not in table.columns]
        if missing:
            raise ModelError(f"feature table lacks {len(missing)} feature(s) the twin was trained on: "
                             + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))

    def risk_ensemble(self, table):
        """(DataFrame patient, organ, fraction, risk; array (rows, members)): the point risk and the risk
        of every member of the classifier's bootstrap ensemble after every fraction, in the DataFrame's
        row order (NaN-padded where the parts' ensembles differ in size). For intervals that pool the
        ensemble with other uncertainty (twin.whatif: draws of forecast image features)."""
        import pandas as pd

        self._check_scorable(table)
        frames, members = [], []
        with _deterministic("cpu", self.threads):
            for part in self.parts_:
                keys = [k for k in trajectory_keys(table) if k[1] in part["organs"]]
                if not keys:
                    continue
                rows, ti, tk, fractions = self._latent_rows(part, table, keys)[:4]
                frames.append(pd.DataFrame({"patient": [keys[i][0] for i in ti], "organ": [keys[i][1] for i in ti],
                                            "fraction": fractions[ti, tk],
                                            "risk": part["classifier"].predict_proba(rows)}))
                members.append(part["classifier"].ensemble_proba(rows))
        if not frames:
            raise ModelError(f"the feature table has no organ the twin knows ({', '.join(self.organs_)})")
        width = max(m.shape[1] for m in members)
        members = np.vstack([np.pad(m, ((0, 0), (0, width - m.shape[1])), constant_values=np.nan) for m in members])
        return pd.concat(frames, ignore_index=True), members

    def _latent_rows(self, part, table, keys):
        """Classifier rows of `keys` (latent state after every fraction + organ code), their trajectory and
        step indices, fractions, and what explanations need (standardised x, organ code, lengths)."""
        pre = part["preprocessor"]
        X, lengths, fractions = to_arrays(table, pre.columns_, keys)
        x, _ = pre.transform(X, pre.columns_)
        onehot = _onehot(keys, part["organs"])
        z = autoencoder.latent(part["autoencoder"], x, onehot)
        rows, ti, tk = _state_rows(z, onehot, lengths)
        return rows, ti, tk, fractions, x, onehot, lengths

    def _score_part(self, part, table, keys, explain):
        import pandas as pd

        pre, ae, clf = part["preprocessor"], part["autoencoder"], part["classifier"]
        rows, ti, tk, fractions, x, onehot, lengths = self._latent_rows(part, table, keys)
        risk = clf.predict_proba(rows)
        low, high = clf.interval(rows)
        out = pd.DataFrame({"patient": [keys[i][0] for i in ti], "organ": [keys[i][1] for i in ti],
                            "fraction": fractions[ti, tk], "risk": risk, "ci_low": low, "ci_high": high,
                            "warning": risk >= part["threshold"], "threshold": part["threshold"]})
        if explain:
            from COMPASSLib.twin.explain import top_contributors

            tops = top_contributors(ae, clf, x, onehot, lengths, fractions, pre.columns_,
                                    self.ig_steps, self.top_k)
            out["top_features"] = [tops[(i, k)] for i, k in zip(ti, tk)]
        return out

    def predict_proba(self, table):
        """(n_trajectories, 2): P(no toxicity), P(toxicity) after each trajectory's last fraction,
        trajectories in (patient, organ) order (`trajectory_index(table)`)."""
        last = self.risk_trajectory(table, explain=False).groupby(["patient", "organ"]).tail(1)
        p = last["risk"].to_numpy()
        return np.column_stack([1 - p, p])

    def trajectory_index(self, table) -> list:
        return [k for k in trajectory_keys(table) if k[1] in self.organs_]

    # --- persistence --------------------------------------------------------------------------
    def save(self, path, extra=None):
        """Write the fitted twin as a model folder (safetensors + JSON, twin.persistence); `extra` goes
        into its provenance (e.g. the feature settings that made its table)."""
        from COMPASSLib.twin import persistence

        self._check_fitted()
        return persistence.write(path, self.get_params(), self.feature_names_in_, self.parts_, extra)

    @classmethod
    def load(cls, path) -> "CompassTwin":
        """A fitted twin from a model folder; its provenance (feature settings, versions) is `provenance_`."""
        from COMPASSLib.errors import ModelError
        from COMPASSLib.twin import persistence

        stored = persistence.read(path)
        try:
            twin = cls(**stored.settings)
        except TypeError as e:
            raise ModelError(f"model folder is inconsistent: {e}", file=path) from None
        twin.feature_names_in_ = np.array(stored.feature_names, dtype=object)
        twin.n_features_in_ = len(stored.feature_names)
        twin.parts_ = stored.parts
        twin.provenance_ = stored.provenance
        twin.path_ = Path(path)        # where it was read from: what sits beside it (features.csv) is found
        return twin

    def feature_settings(self):
        """The FeatureSettings the twin's training table was made with (recorded at save time; the full
        profile for a model saved without them): scoring a new table must use the same."""
        from COMPASSLib.features.settings import FeatureSettings

        return FeatureSettings.from_dict(getattr(self, "provenance_", {}).get("feature_settings")
                                         or {"profile": "full"})


def _prefix_weights(ti, tk, lengths, rule):
    """Classifier weight of the state after fraction tk+1 of trajectory ti; each trajectory one vote.
    "uniform": every fraction alike (1/length); "linear": proportional to the fraction number, so the
    later, better-informed states (the risk after the last fraction is what is scored against the
    outcome) count more while early states are still seen."""
    if rule == "uniform":
        return 1.0 / lengths[ti]
    if rule == "linear":
        n = lengths[ti].astype(float)
        return (tk + 1.0) / (n * (n + 1.0) / 2.0)
    raise ModelError(f"prefix_weight must be 'uniform' or 'linear', not {rule!r}")


def _class_weights(y, weights, rule):
    """None: the weights as they are; "balanced": toxic and non-toxic rows carry equal total weight, so the
    classifier's intercept no longer follows the training prevalence. Why it is offered: in leave-one-patient-
    out on a few patients, holding out a patient with toxic organs lowers the training prevalence and with it
    every held-out risk of that fold, a negative bias of pooled LOPO AUC (docs/twin.md, Measured). The risks
    are then relative to a 50 % prevalence, so calibration is given up for ranking: off by default."""
    if rule is None:
        return weights
    if rule != "balanced":
        raise ModelError(f"class_weight must be None or 'balanced', not {rule!r}")
    w = np.asarray(weights, dtype=float).copy()
    total = w.sum()
    for c in (0, 1):
        m = np.asarray(y) == c
        if m.any():
            w[m] *= total / (2.0 * w[m].sum())
    return w


def _feature_weights(columns, balance):
    """Reconstruction weight per column: None = equal; "groups" = every feature family (the name's prefix:
    bed, dvh, dose, tex, ct, pet, shape, clin) carries the same share, split equally among its columns."""
    if balance is None:
        return None
    if balance != "groups":
        raise ModelError(f"balance must be None or 'groups', not {balance!r}")
    family = [c.split("_", 1)[0] for c in columns]
    counts = {f: family.count(f) for f in family}
    return np.array([1.0 / counts[f] for f in family])


def _onehot(keys, organs):
    pos = {o: i for i, o in enumerate(organs)}
    m = np.zeros((len(keys), len(organs)), dtype=np.float32)
    for i, (_, o) in enumerate(keys):
        m[i, pos[o]] = 1.0
    return m


def _state_rows(z, onehot, lengths):
    """Classifier rows: the latent state after every valid fraction + the organ code; with the
    trajectory index and step of each row."""
    ti, tk = np.nonzero(np.arange(z.shape[1])[None, :] < lengths[:, None])
    return np.hstack([z[ti, tk], onehot[ti]]).astype(np.float64), ti, tk


def _final_rows(z, onehot, lengths):
    idx = np.arange(len(z))
    return np.hstack([z[idx, lengths - 1], onehot]).astype(np.float64)


@contextlib.contextmanager
def _deterministic(device, threads):
    """Bitwise-reproducible CPU training (GPU kernels may still differ in the last bits), on `threads`
    CPU threads: these GRUs are tiny, and intra-op threads only add synchronisation (measured on 2 busy
    cores: 12 s with 1 thread, 259 s with 2 for the same fit)."""
    import torch

    before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])
