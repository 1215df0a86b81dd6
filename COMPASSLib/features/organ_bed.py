"""Cumulative BED per organ, fraction by fraction: what the feature table, the texture-map files and the
Slicer texture overlays all compute their organ figures from, so the three agree to the bit.

Each organ's BED uses that organ's own alpha/beta in every voxel (COMPASSLib.dose.accumulate_bed does
the arithmetic). The running sums are kept as float32, like the NRRD/DICOM inputs; the feature cache
stores the same arrays, so a cached rerun continues exactly where the first run was.
"""
from __future__ import annotations

import numpy as np


def add_fraction(dose_arr, organs, alpha_beta_overrides, previous: dict | None) -> tuple:
    """One fraction onto the running sums. `previous`: the state after the fraction before (None for the
    first). Returns (fraction BED per organ, float64; new state {"dose": cumulative physical dose,
    "bed_<organ>": cumulative BED}, float32). BED maps do not depend on the contour: every organ gets
    one on the whole grid, every fraction, so an organ contoured late still has its full history."""
    from COMPASSLib import dose as dosemod
    from COMPASSLib import resources

    state = {"dose": (dose_arr + (previous["dose"] if previous else 0.0)).astype(np.float32)}
    fraction_beds = {}
    for organ in organs:
        ab = resources.alpha_beta(organ, alpha_beta_overrides)
        fraction_beds[organ], total = dosemod.accumulate_bed(
            previous[f"bed_{organ}"] if previous else None, dose_arr, ab, f"dose ({organ})")
        state[f"bed_{organ}"] = total.astype(np.float32)
    return fraction_beds, state


def cumulative_organ_bed(fraction_doses, organ: str, alpha_beta_overrides=None) -> np.ndarray:
    """The organ's cumulative BED after the last of `fraction_doses` (arrays or images on one grid, in
    delivery order), float32 as the feature table holds it."""
    from COMPASSLib import dose as dosemod

    state = None
    for k, d in enumerate(fraction_doses, start=1):
        _, state = add_fraction(dosemod.checked_dose(d, f"dose of fraction {k}"), [organ], alpha_beta_overrides,
                                state)
    if state is None:
        from COMPASSLib.errors import DoseError

        raise DoseError(f"cumulative BED of {organ} needs at least one fraction dose")
    return state[f"bed_{organ}"]
