"""Forecast of the image features (ct_, pet_ columns) of fractions not yet delivered, for twin.whatif.

Dose features of a future fraction follow exactly from its projected dose; its CT and PET do not exist
yet. The rule (docs/whatif.md): each image feature is a straight line in the organ's *exposure*, the
organ's cumulative mean BED delivered before that fraction's scan (the scan of fraction k is taken
before the day's beam, so it sees fractions 1..k-1: exposure 0 at fraction 1). The line is fitted by
least squares to the patient's own delivered fractions 1..K of that organ (K >= 2); after one fraction
the slope cannot be seen, so it is the training cohort's median slope for that organ and feature (0
without a training table), through the delivered value. A replan changes the future exposure, so it
changes the forecast PET/CT the way the patient's own response so far says it should.

Uncertainty: the same rule applied to every training trajectory of the organ, cut after its fraction
K, predicts that trajectory's real later values; its residuals (actual - forecast, one matrix of
horizon x feature per trajectory, so correlations between features and across fractions are kept) are
the forecast errors one draw samples. twin.whatif scores every draw and pools the draws with the
classifier's bootstrap ensemble into the risk interval.
"""
from __future__ import annotations

import numpy as np

IMAGE_PREFIXES = ("ct_", "pet_")
EXPOSURE_COLUMN = "bed_mean_gy"   # the organ's cumulative mean BED (its own alpha/beta), features.kinetics


def image_columns(columns) -> list:
    """The raw image-feature columns (assembled tables' ct_delta_/pet_delta_ columns are derived from
    these by features.table.assemble, so they are not forecast themselves)."""
    return [c for c in columns if c.startswith(IMAGE_PREFIXES) and "_delta_" not in c]


def exposure(bed_mean_after) -> np.ndarray:
    """Exposure seen by the scan of each fraction: 0, then the cumulative mean BED after fraction k-1."""
    b = np.asarray(bed_mean_after, dtype=float)
    return np.concatenate([[0.0], b[:-1]])


def fit_lines(x, y, fallback_slope=None):
    """Per column of y (K, C): (intercept, slope) of y against x (K,), NaN values ignored. Fewer than two
    usable points or no spread in x: the line through the last value with `fallback_slope` (C,) (or 0)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n_cols = y.shape[1]
    slope = np.zeros(n_cols) if fallback_slope is None else np.nan_to_num(np.asarray(fallback_slope, float))
    slope = slope.copy()
    intercept = np.full(n_cols, np.nan)
    for c in range(n_cols):
        ok = np.isfinite(y[:, c])
        if not ok.any():
            continue
        xs, ys = x[ok], y[ok, c]
        if ok.sum() >= 2 and np.ptp(xs) > 1e-9:
            slope[c], intercept[c] = np.polyfit(xs, ys, 1)
        else:
            intercept[c] = ys[-1] - slope[c] * xs[-1]
    return intercept, slope


def forecast_values(x_delivered, y_delivered, x_future, fallback_slope=None) -> np.ndarray:
    """(H, C): the rule's forecast at the future exposures `x_future` (H,)."""
    a, b = fit_lines(x_delivered, y_delivered, fallback_slope)
    return a[None, :] + b[None, :] * np.asarray(x_future, float)[:, None]


class ImageForecast:
    """The rule for one cut-off fraction K, with what the training table teaches it: per organ the
    median slope (used when K = 1) and the forecast residuals of the training trajectories."""

    def __init__(self, after: int, columns, training=None):
        self.after = int(after)
        self.columns = list(columns)
        self.slopes = {}      # organ -> (C,) median training slope
        self.residuals = {}   # organ -> list of (H_i, C) arrays, one per training trajectory longer than K
        if training is not None and len(training):
            self._learn(training)

    @property
    def has_residuals(self) -> bool:
        return any(self.residuals.values())

    def _trajectories(self, training):
        cols = [c for c in self.columns if c in training.columns]
        for (_, organ), g in training.groupby(["patient", "organ"], sort=True):
            g = g.sort_values("fraction")
            y = np.full((len(g), len(self.columns)), np.nan)
            y[:, [self.columns.index(c) for c in cols]] = g[cols].to_numpy(dtype=float)
            yield str(organ), exposure(g[EXPOSURE_COLUMN].to_numpy(float)), y

    def _learn(self, training):
        trajectories = list(self._trajectories(training))
        slopes = {}
        for organ, x, y in trajectories:
            slopes.setdefault(organ, []).append(fit_lines(x, y)[1] if len(x) >= 2 else np.full(y.shape[1], np.nan))
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN columns: median NaN -> 0 below
                self.slopes = {o: np.nan_to_num(np.nanmedian(np.array(s), axis=0)) for o, s in slopes.items()}
        k = self.after
        for organ, x, y in trajectories:
            if len(x) <= k:
                continue
            f = forecast_values(x[:k], y[:k], x[k:], self._fallback(organ))
            self.residuals.setdefault(organ, []).append(np.nan_to_num(y[k:] - f))

    def _fallback(self, organ):
        return self.slopes.get(organ) if self.after == 1 else None

    def point(self, organ, x_delivered, y_delivered, x_future) -> np.ndarray:
        return forecast_values(x_delivered, y_delivered, x_future, self._fallback(organ))

    def residual_draws(self, organ, horizon: int, n: int, rng) -> np.ndarray:
        """(n, horizon, C) residual trajectories drawn from the organ's training residuals (zeros when there
        are none); a training trajectory shorter than the horizon repeats its last residual."""
        pool = self.residuals.get(organ) or []
        out = np.zeros((n, horizon, len(self.columns)))
        if not pool:
            return out
        for i, j in enumerate(rng.integers(0, len(pool), n)):
            r = pool[j]
            out[i] = r[np.minimum(np.arange(horizon), len(r) - 1)]
        return out
