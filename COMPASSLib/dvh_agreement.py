"""How far a COMPASS DVH is from a planning system's DVH of the same ROI (`compass dvh --compare-tps`).

Two figures per ROI, both over the planning system's points (`io.planning_dvh.PlanningDVH`):
- `max_volume_diff_pp`: the largest difference of the relative cumulative volumes at the planning
  system's doses, in volume-% points. The plain figure, but ill-conditioned where a small ROI lies in a
  steep gradient: in the dicompyler example's Scar (3 mm wide, 0.9-12 Gy across it) a 0.1 mm shift of the
  dose grid moves it by 1.6-3 points, and in ROIs whose whole DVH spans a few planning-system bins a dose
  difference of a quarter bin moves it by 3 points.
- `gamma_max`: the largest DVH gamma: per planning-system point (D, V) the distance to COMPASS's curve in
  units of the criteria, min over the curve of sqrt((dD / dose tolerance)^2 + (dV / volume tolerance)^2),
  the gamma index of Low et al. (Med Phys 1998) applied to the two DVH curves. Dose tolerance = `dose_pct`
  of a reference dose (the global convention: the prescription, or the dose grid's maximum when none is
  given), volume tolerance in volume-% points. gamma <= 1: the point is met within the criteria. The curve
  is COMPASS's cumulative DVH as drawn, its vertical steps included; the index is exact to 0.005.
"""
from __future__ import annotations

import numpy as np

from COMPASSLib.dose import DVH
from COMPASSLib.io.planning_dvh import PlanningDVH

GAMMA_RESOLUTION = 0.005
CHUNK_VALUES = 4_000_000   # 32 MB a temporary array, whatever the criteria and the number of points


def volume_differences(dvh: DVH, planning: PlanningDVH) -> np.ndarray:
    """COMPASS minus the planning system, volume-% points, at each planning-system dose."""
    return dvh.vx_pct(np.asarray(planning.dose_gy, float)) - planning.volume_pct


def dvh_gamma(dvh: DVH, planning: PlanningDVH, dose_tolerance_gy: float, volume_tolerance_pct: float) -> np.ndarray:
    """The DVH gamma index of every planning-system point (module docstring)."""
    if not (dose_tolerance_gy > 0 and volume_tolerance_pct > 0):
        raise ValueError("gamma criteria must be positive")
    x0, x1, y0, y1 = _staircase(dvh, dose_tolerance_gy, volume_tolerance_pct)
    px = np.asarray(planning.dose_gy, float) / dose_tolerance_gy
    py = np.asarray(planning.volume_pct, float) / volume_tolerance_pct
    out = np.empty(len(px))
    step = max(1, CHUNK_VALUES // len(x0))   # points per pass: each temporary holds <= CHUNK_VALUES floats
    for i in range(0, len(px), step):
        x, y = px[i:i + step, None], py[i:i + step, None]
        dx = np.maximum(np.maximum(x0 - x, x - x1), 0.0)
        dy = np.maximum(np.maximum(np.minimum(y0, y1) - y, y - np.maximum(y0, y1)), 0.0)
        out[i:i + step] = np.sqrt(dx ** 2 + dy ** 2).min(axis=1)
    return out


def _staircase(dvh: DVH, dose_tolerance_gy, volume_tolerance_pct):
    """COMPASS's cumulative curve as axis-parallel segments (x0, x1, y0, y1) in units of the criteria: its
    vertical steps and the flat stretches between them, and 100 % below the lowest dose, 0 % above the
    highest. Samples closer in dose than GAMMA_RESOLUTION of the dose tolerance share one vertical
    segment (a DVH of a million samples stays a few thousand segments), which moves no point of the
    curve by more than GAMMA_RESOLUTION: the index is exact to that."""
    values, n = dvh.values, dvh.n_voxels
    cell = np.floor(values / (dose_tolerance_gy * GAMMA_RESOLUTION))
    first = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])          # first sample of each cell
    after = np.r_[first[1:], n]                                          # one past its last sample
    x = values[first] / dose_tolerance_gy
    top = 100.0 * (n - first) / n / volume_tolerance_pct                 # V at the cell's first dose
    bottom = 100.0 * (n - after) / n / volume_tolerance_pct              # V just above its last dose
    inf = np.inf
    x0 = np.r_[x, -inf, x]                 # vertical steps, the 100 % stretch below, the flat stretches
    x1 = np.r_[x, x[0], np.r_[x[1:], inf]]
    y0 = np.r_[top, top[0], bottom]
    y1 = np.r_[bottom, top[0], bottom]
    return x0, x1, y0, y1


def agreement(dvh: DVH, planning: PlanningDVH, reference_dose_gy: float, dose_pct=1.0, volume_pct=1.0) -> dict:
    """The `planning_system` entry of `compass dvh --compare-tps` for one ROI."""
    diffs = volume_differences(dvh, planning)
    gamma = dvh_gamma(dvh, planning, reference_dose_gy * dose_pct / 100.0, volume_pct)
    worst = int(np.argmax(np.abs(diffs)))
    return {"volume_cc": planning.volume_cc, "dvh_type": planning.dvh_type, "points": int(len(diffs)),
            "max_volume_diff_pp": float(abs(diffs[worst])), "at_dose_gy": float(planning.dose_gy[worst]),
            "gamma_max": float(gamma.max()), "gamma_pass_rate": float(np.mean(gamma <= 1.0)),
            "criteria": {"dose_pct": float(dose_pct), "volume_pct": float(volume_pct),
                         "reference_dose_gy": float(reference_dose_gy),
                         "dose_tolerance_gy": float(reference_dose_gy * dose_pct / 100.0)}}
