"""A feature table simulated in the schema of COMPASSLib.features.table (patient, organ, fraction,
bed_*, dvh_*, pet_*, ct_*, clin_*) for fast, controllable twin tests (test helper only; the checks of
the simulation itself are in test_twin_simulation.py).

The outcome depends weakly on the organ's dose (what LKB and mean dose see) and strongly on a hidden
radiosensitivity that shows as PET uptake rising fraction after fraction (what only the twin sees),
the mechanism the COMPASS paper reports: metabolic response precedes symptoms.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

ORGANS = {"SpinalCord": (1.2, 2.0), "Heart": (1.0, 3.0), "Esophagus": (1.6, 10.0)}  # Gy/fraction, a/b


def simulate_table(patients=40, fractions=5, seed=0, signal=1.0, ragged=True):
    """(table, outcomes DataFrame patient, organ, grade, onset_fraction)."""
    rng = np.random.default_rng(seed)
    rows, outcomes = [], []
    for p in range(patients):
        pid = f"SIM{p:03d}"
        age = rng.uniform(45, 80)
        n_frac = fractions - (1 if ragged and p % 7 == 3 else 0)   # some patients miss a fraction
        for organ, (d0, ab) in ORGANS.items():
            d = d0 * rng.uniform(0.5, 1.5)                          # Gy per fraction
            s = rng.normal()                                        # hidden radiosensitivity
            dose_z = (d - d0) / (0.3 * d0)
            tox = 0.6 * dose_z + 2.0 * signal * s + rng.normal(0, 0.5) > 1.0
            suv0 = rng.uniform(1.2, 2.0)
            for k in range(1, n_frac + 1):
                cum = d * k
                bed = cum * (1 + d / ab)
                rows.append({
                    "patient": pid, "organ": organ, "fraction": k,
                    "bed_mean_gy": bed, "bed_geud_gy": bed * rng.uniform(1.0, 1.1),
                    "bed_increment_mean_gy": d * (1 + d / ab),
                    "dvh_mean_gy": cum, "dvh_max_gy": cum * rng.uniform(1.2, 1.4),
                    "pet_suv_mean": suv0 * (1 + 0.08 * k * max(s, 0) * signal) + rng.normal(0, 0.05),
                    "pet_suv_max": suv0 * 2.5 * (1 + 0.05 * k * max(s, 0) * signal) + rng.normal(0, 0.2),
                    "ct_hu_mean": 40 + rng.normal(0, 3),
                    "ct_constant": 1.0,                       # constant: must be dropped by selection
                    "clin_age": age})
            onset = int(rng.integers(3, fractions + 3)) if tox else None
            outcomes.append({"patient": pid, "organ": organ, "grade": int(tox) * int(rng.integers(1, 3)),
                             "onset_fraction": onset})
    return pd.DataFrame(rows), pd.DataFrame(outcomes)
