"""BED kinetics of an organ on arrays, against the linear-quadratic textbook values (Fowler 1989):
n fractions of d Gy give BED = n d (1 + d/(a/b)) and EQD2 = n d (1 + d/(a/b)) / (1 + 2/(a/b))."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from COMPASSLib.features import kinetics
from COMPASSLib.features.settings import FeatureSettings
from COMPASSLib.errors import InputError

VOXEL_CC = 0.1   # 1 cc = 10 voxels


def _organ(k, ab=3.0, d=3.0):
    """A 1000-voxel (100 cc) organ: 990 voxels get d Gy per fraction, a 10-voxel (1 cc) hot spot 2d."""
    mask = np.zeros((10, 10, 12), np.uint8)
    mask[:, :, :10] = 1
    dose = np.where(mask > 0, d, 0.5)
    dose[0, 0, :10] = 2 * d   # hot spot: 10 voxels = 1 cc
    fx_bed = dose * (1 + dose / ab)
    return kinetics.organ_kinetics(k * fx_bed, fx_bed, k * dose, dose, mask, VOXEL_CC, ab, 0.25, [20, 40])


def test_bed_and_eqd2_match_linear_quadratic_values():
    k, ab, d = 5, 3.0, 3.0
    r = _organ(k, ab, d)
    bed_d = k * d * (1 + d / ab)            # 30 Gy BED for the bulk
    bed_hot = k * 2 * d * (1 + 2 * d / ab)  # 90 Gy BED in the hot spot
    assert r["bed_alpha_beta_gy"] == ab
    assert r["bed_min_gy"] == pytest.approx(bed_d)
    assert r["bed_max_gy"] == pytest.approx(bed_hot)
    assert r["bed_mean_gy"] == pytest.approx((990 * bed_d + 10 * bed_hot) / 1000)
    assert r["bed_d0_1cc_gy"] == pytest.approx(bed_hot)       # hottest 0.1 cc lies in the 1 cc hot spot
    assert r["bed_d2cc_gy"] == pytest.approx(bed_d)           # 2 cc reaches beyond it
    assert r["bed_d50_gy"] == pytest.approx(bed_d) and r["bed_d95_gy"] == pytest.approx(bed_d)
    assert r["bed_v20gy_pct"] == pytest.approx(100.0) and r["bed_v40gy_pct"] == pytest.approx(1.0)
    assert r["bed_v40gy_cc"] == pytest.approx(1.0)
    assert r["bed_fx_max_gy"] == pytest.approx(2 * d * (1 + 2 * d / ab))
    assert r["dvh_volume_cc"] == pytest.approx(100.0)
    assert r["dvh_dose_mean_gy"] == pytest.approx(k * (990 * d + 10 * 2 * d) / 1000)
    assert r["dvh_eqd2_max_gy"] == pytest.approx(bed_hot / (1 + 2 / ab))
    # gEUD lies between mean and max and grows toward the max as n shrinks
    assert r["bed_mean_gy"] < r["bed_geud_gy"] < r["bed_max_gy"]


def test_eqd2_of_2gy_fractions_is_the_physical_dose():
    r = _organ(k=10, ab=10.0, d=2.0)
    assert r["dvh_eqd2_d2cc_gy"] == pytest.approx(20.0)
    assert r["dvh_eqd2_d2cc_gy"] == pytest.approx(r["dvh_dose_d2cc_gy"])


def test_increments_and_rates_across_fractions():
    rows = [dict(patient="P", organ="Heart", fraction=k, **_organ(k)) for k in (1, 2, 3)]
    t = kinetics.add_increments(pd.DataFrame(rows))
    per_fx = _organ(1)["bed_mean_gy"]
    assert np.allclose(t["bed_inc_mean_gy"], per_fx)          # fraction 1 starts from 0
    assert np.allclose(t["bed_rate_mean_gy_per_fx"], per_fx)


def test_settings_round_trip_and_validation(tmp_path):
    s = FeatureSettings(profile="fast", alpha_beta={"Heart": 2.5})
    assert s.radiomics == {"pet": ["firstorder"]} and s.shape is False
    for name in ("s.yaml", "s.json"):
        s.save(tmp_path / name)
        assert FeatureSettings.load(tmp_path / name) == s
    full = FeatureSettings.load(tmp_path / "s.yaml", profile="full")
    assert full.profile == "full" and full.shape and "glcm" in full.radiomics["dose"]
    assert full.alpha_beta == {"Heart": 2.5}
    with pytest.raises(InputError, match="unknown feature profile"):
        FeatureSettings(profile="quick")
    (tmp_path / "bad.yaml").write_text("bin_width: 3\n")
    with pytest.raises(InputError, match="unknown feature setting.*bad.yaml"):
        FeatureSettings.load(tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="alpha/beta override"):
        FeatureSettings(alpha_beta={"Heart": -1})
