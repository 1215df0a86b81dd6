"""`compass synth --fractions 30`: conventional fractionation (2.0-2.2 Gy per fraction), the GTV shrinkage
and the onset lag spread over the longer course; the 5-fraction cohorts unchanged (the hidden truth of a
seed pinned to the values the generator gave before fractionation depended on the course length)."""
from __future__ import annotations

import numpy as np
import pytest

from COMPASSLib.synth import draw_truth, toxicity
from COMPASSLib.synth.dose import SBRT_TOTALS_GY, course_prescription_gy, fraction_dose, gtv_radius
from COMPASSLib.synth.patient import simulate_patient

# draw_truth(patients=3, fractions=5, seed=1, size="small") as written by the generator of 2 Dec 2026,
# before this change: (patient, organ, probability, grade, onset, mean BED Gy).
PINNED_5_FRACTIONS = [
    ("SYN001", "SpinalCord", 0.9192715649, 2, 4, 25.80232366),
    ("SYN001", "Heart", 0.8712235156, 3, 6, 1.98949481),
    ("SYN001", "Esophagus", 0.2950257906, 0, None, 8.70952813),
    ("SYN002", "SpinalCord", 0.1073962183, 0, None, 12.03659685),
    ("SYN002", "Heart", 0.5498236234, 1, 6, 1.85274236),
    ("SYN002", "Esophagus", 0.3643817523, 0, None, 5.74616141),
    ("SYN003", "SpinalCord", 0.5363769832, 0, None, 8.27739461),
    ("SYN003", "Heart", 0.4020693899, 0, None, 0.18195419),
    ("SYN003", "Esophagus", 0.8514828368, 1, 3, 7.32750865),
]


def test_five_fraction_truth_is_the_one_of_earlier_versions():
    rows = draw_truth(patients=3, fractions=5, seed=1, size="small")
    got = [(r["patient"], r["organ"], r["probability"], r["grade"], r["onset_fraction"], r["mean_bed_gy"])
           for r in rows]
    for g, want in zip(got, PINNED_5_FRACTIONS, strict=True):
        assert g[:2] == want[:2] and g[3:5] == want[3:5]
        assert g[2] == pytest.approx(want[2], abs=1e-10) and g[5] == pytest.approx(want[5], abs=1e-8)   # as rounded


def test_prescriptions_sbrt_split_then_conventional():
    # Up to 24 fractions the SBRT total is split (5 fx: 10-12 Gy; 55 Gy in 20 fx = 2.75 Gy, a UK schedule).
    for total in SBRT_TOTALS_GY:
        for k in range(1, 25):
            assert course_prescription_gy(total, k) == total
    # 30 fractions: 60 Gy in 30 x 2 Gy (the standard arm of RTOG 0617), 63 and 66 Gy (2.1, 2.2 Gy).
    assert [course_prescription_gy(t, 30) for t in SBRT_TOTALS_GY] == [60.0, 63.0, 66.0]
    # continuous in K: the conventional rule takes over where the split reaches the conventional dose
    for total in SBRT_TOTALS_GY:
        per_fraction = [course_prescription_gy(total, k) / k for k in range(20, 40)]
        assert np.all(np.diff(per_fraction) <= 1e-12) and min(per_fraction) >= 2.0 - 1e-12


def test_thirty_fractions_conventional_course():
    sim = simulate_patient(3, 1, 30, "small")
    plan = sim.plan
    assert plan.fractions == 30 and plan.prescription_gy in (60.0, 63.0, 66.0)
    gtv = sim.masks[1]["GTV"]
    planned = fraction_dose(sim.grid, sim.masks[1]["BODY"], gtv, sim.anatomy, plan, 1, planned=True)
    # D95 of the GTV per fraction = the conventional 2.0-2.2 Gy (no setup error in the planned dose)
    assert np.percentile(planned[gtv], 5) == pytest.approx(plan.prescription_gy / 30, rel=1e-9)
    delivered = sum(sim.doses_gy)
    assert np.percentile(delivered[sim.masks[0]["GTV"]], 5) == pytest.approx(plan.prescription_gy, rel=0.1)
    # the GTV shrinks by at most 32 % over the course, as in 5 fractions, and never vanishes
    assert 0.68 * sim.anatomy.gtv_r_mm - 1e-9 <= gtv_radius(sim.anatomy, plan, 30) <= sim.anatomy.gtv_r_mm
    for organ in toxicity.ORGANS:
        signals, outcome = sim.signals[organ], sim.outcomes[organ]
        assert len(signals["injury"]) == 30 and np.all(np.diff(signals["injury"]) >= 0)
        if outcome["grade"]:
            # the stretched lag: at least 12 fractions after the PET shows the rise (or after the course)
            crossing = toxicity.pet_crossing(signals["injury"])
            assert outcome["onset_fraction"] == min(crossing + 12, 31) or \
                outcome["onset_fraction"] == min(crossing + 18, 31)


def test_onset_lag_and_recorded_parameters_follow_the_course():
    assert [toxicity.onset_lag(lag, 5) for lag in (2, 3)] == [2, 3]
    assert [toxicity.onset_lag(lag, 2) for lag in (2, 3)] == [2, 3]
    assert [toxicity.onset_lag(lag, 30) for lag in (2, 3)] == [12, 18]
    assert toxicity.parameters(5) == toxicity.parameters()
    assert "onset_lag_fractions_of_this_course" not in toxicity.parameters(5)
    assert toxicity.parameters(30)["onset_lag_fractions_of_this_course"] == [12, 18]
