"""BED kinetics and DVH figures of one organ after fraction k, from voxelwise maps (COMPASSLib.dose).

bed_*  cumulative BED after fraction k (organ alpha/beta): mean, max, min, D2cc, D0.1cc, D50, D95, D98,
       V at the settings' BED levels (% and cc), gEUD with the organ's n; bed_fx_* the BED delivered in
       fraction k; bed_alpha_beta_gy records the alpha/beta that made them.
dvh_*  organ volume at fraction k, cumulative physical dose (dvh_dose_*) and EQD2 (dvh_eqd2_*).
Increments since k-1 and rates per fraction are added across fractions by `add_increments`.
"""
from __future__ import annotations

import numpy as np

from COMPASSLib import dose as dosemod

# cumulative metrics that also get an increment (since k-1) and a rate (per fraction) column
TRACKED = ("mean_gy", "max_gy", "d2cc_gy", "geud_gy")


def organ_kinetics(cum_bed: np.ndarray, fraction_bed: np.ndarray, cum_dose: np.ndarray, fraction_dose: np.ndarray,
                   mask: np.ndarray, voxel_cc: float, alpha_beta_gy: float, geud_n: float, bed_levels_gy) -> dict:
    """All arrays (z, y, x) on one grid; `mask` nonzero inside the organ."""
    out = {"bed_alpha_beta_gy": float(alpha_beta_gy), "bed_geud_n": float(geud_n)}
    m = dosemod.dvh(cum_bed, mask, voxel_cc).metrics(dx_pct=(50, 95, 98), dx_cc=(0.1, 2), vx_gy=bed_levels_gy,
                                                     geud_n=geud_n)
    m.pop("geud_n")
    volume = m.pop("volume_cc")
    out.update({f"bed_{k}": v for k, v in m.items()})
    fx = dosemod.dvh(fraction_bed, mask, voxel_cc)
    out.update({"bed_fx_mean_gy": fx.mean_gy, "bed_fx_max_gy": fx.max_gy, "bed_fx_d2cc_gy": fx.dx_cc(2)})

    out["dvh_volume_cc"] = volume
    phys = dosemod.dvh(cum_dose, mask, voxel_cc)
    out.update({"dvh_dose_mean_gy": phys.mean_gy, "dvh_dose_max_gy": phys.max_gy, "dvh_dose_d2cc_gy": phys.dx_cc(2),
                "dvh_dose_fx_mean_gy": dosemod.dvh(fraction_dose, mask, voxel_cc).mean_gy})
    eqd2 = dosemod.eqd2_from_bed(cum_bed[np.asarray(mask) > 0], alpha_beta_gy)
    e = dosemod.DVH(eqd2, voxel_cc)
    out.update({"dvh_eqd2_mean_gy": e.mean_gy, "dvh_eqd2_max_gy": e.max_gy, "dvh_eqd2_d2cc_gy": e.dx_cc(2),
                "dvh_eqd2_d0_1cc_gy": e.dx_cc(0.1), "dvh_eqd2_geud_gy": e.geud(geud_n)})
    return out


def add_increments(table):
    """bed_inc_<m> (change since fraction k-1; fraction 1 starts from 0) and bed_rate_<m>_per_fx
    (cumulative value / k) for the TRACKED metrics; `table` sorted by patient, organ, fraction."""
    g = table.groupby(["patient", "organ"], sort=False)
    for m in TRACKED:
        col = f"bed_{m}"
        table[f"bed_inc_{m}"] = table[col] - g[col].shift(1).fillna(0.0)
        table[f"bed_rate_{m}_per_fx"] = table[col] / table["fraction"]
    return table
