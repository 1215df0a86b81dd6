"""LKB NTCP against the published test vectors (issue 5) and the parameter table in Resources/."""
from __future__ import annotations

import numpy as np
import pytest

from COMPASSLib import dose, ntcp
from COMPASSLib.errors import DoseError

PUBLISHED = {  # name: (organ, TD50, m, n) as published
    "burman1991_spinal_cord": ("SpinalCord", 66.5, 0.175, 0.05),
    "burman1991_heart": ("Heart", 48.0, 0.10, 0.35),
    "burman1991_esophagus": ("Esophagus", 68.0, 0.11, 0.06),
    "belderbos2005_esophagitis": ("Esophagus", 47.0, 0.36, 0.69),
    "quantec_lung_pneumonitis": ("Lungs", 31.4, 0.45, 1.0),
}


def test_parameter_sets_are_the_published_ones_with_citation_and_endpoint():
    sets = ntcp.parameter_sets()
    assert set(sets) == set(PUBLISHED)
    for name, (organ, td50, m, n) in PUBLISHED.items():
        p = sets[name]
        assert (p.organ, p.td50_gy, p.m, p.n) == (organ, td50, m, n)
        assert p.citation and p.endpoint
    assert {p.name for p in ntcp.sets_for_organ("Oesophagus")} == {"burman1991_esophagus",
                                                                    "belderbos2005_esophagitis"}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_uniform_dose_at_td50_is_half(name):
    p = ntcp.parameter_sets()[name]
    assert p.ntcp(np.full(100, p.td50_gy)) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("name, uniform_gy, expected", [
    ("burman1991_heart", 40.0, 0.0478),
    ("belderbos2005_esophagitis", 35.0, 0.2391),
    ("burman1991_spinal_cord", 50.0, 0.0781),
])
def test_published_ntcp_vectors(name, uniform_gy, expected):
    p = ntcp.parameter_sets()[name]
    assert p.ntcp(np.full(50, uniform_gy)) == pytest.approx(expected, abs=5e-5)


def test_lkb_takes_a_dvh_and_uses_geud():
    values = np.r_[np.full(500, 10.0), np.full(500, 30.0)]
    d = dose.DVH(values, voxel_cc=0.1)
    via_dvh = ntcp.lkb(d, 48.0, 0.10, 0.35)
    assert via_dvh == pytest.approx(ntcp.lkb(values, 48.0, 0.10, 0.35))
    assert via_dvh == pytest.approx(ntcp.lkb_from_geud(dose.geud(values, 0.35), 48.0, 0.10))
    # serial organ (small n): the hot half drives NTCP, far above the mean-dose value
    assert ntcp.lkb(values, 31.0, 0.1, 0.05) > 0.2 > 0.001 > ntcp.lkb(values, 31.0, 0.1, 1.0)


@pytest.mark.parametrize("td50, m, n", [(0, 0.1, 0.3), (50, 0, 0.3), (50, 0.1, 0), (50, float("nan"), 0.3)])
def test_bad_parameters(td50, m, n):
    with pytest.raises(DoseError, match="LKB"):
        ntcp.lkb(np.ones(3), td50, m, n)
