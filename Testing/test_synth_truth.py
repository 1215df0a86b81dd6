"""The hidden ground truth does what docs/synthetic_cohort.md says, on a 40-patient cohort drawn without
DICOM: toxic organs show a larger hot-spot index and a larger PET rise than non-toxic ones, the toxic rate
is in the intended range, mean dose alone is only moderately predictive, onsets follow the signal, and
the rows equal what generate_cohort wrote for the same seed."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, spearmanr

from COMPASSLib.cohort import Cohort
from COMPASSLib.synth import draw_truth, generate_cohort, toxicity


@pytest.fixture(scope="module")
def truth():
    return draw_truth(patients=40, fractions=5, seed=2026, size="small")


def auc(x, toxic):
    """Probability that a toxic organ has the larger value (the Mann-Whitney U over n1 n0)."""
    x, toxic = np.asarray(x, float), np.asarray(toxic, bool)
    u = mannwhitneyu(x[toxic], x[~toxic]).statistic
    return u / (toxic.sum() * (~toxic).sum())


@pytest.mark.slow
def test_toxic_rate_and_grades_are_in_the_intended_range(truth):
    grades = np.array([r["grade"] for r in truth])
    assert len(truth) == 120
    assert 0.25 <= np.mean(grades >= 1) <= 0.55
    assert set(grades) <= {0, 1, 2, 3} and (grades == 1).sum() > (grades == 3).sum()


# One-sided Mann-Whitney U, toxic > non-toxic. The PET rise carries most of the hidden information,
# the hot-spot index a weaker share (docs/synthetic_cohort.md), hence the different significance levels.
@pytest.mark.slow
@pytest.mark.parametrize("signal, alpha, min_auc", [("hotspot_index", 0.05, 0.58), ("pet_rise", 1e-4, 0.7)])
def test_toxic_organs_have_larger_hotspot_index_and_pet_rise(truth, signal, alpha, min_auc):
    toxic = np.array([r["grade"] >= 1 for r in truth])
    x = np.array([r[signal] for r in truth])
    p = mannwhitneyu(x[toxic], x[~toxic], alternative="greater").pvalue
    assert p < alpha, f"{signal}: one-sided Mann-Whitney p = {p:.3g}"
    assert auc(x, toxic) > min_auc


@pytest.mark.slow
def test_mean_dose_alone_is_only_moderately_predictive(truth):
    """Per organ (a mean-dose model is fitted per organ), mean dose does not rank toxic organs
    near-perfectly, and for cord and esophagus worse than the PET rise does: the information is in the
    time series. The heart is judged among the hearts past the dose gate (mean BED >= DOSE_GATE_BED_GY):
    in peripheral right-sided cases it gets almost nothing and is never toxic by design, which any dose
    measure ranks trivially."""
    for organ in ("SpinalCord", "Heart", "Esophagus"):
        rows = [r for r in truth if r["organ"] == organ]
        if organ == "Heart":
            rows = [r for r in rows if r["mean_bed_gy"] >= toxicity.DOSE_GATE_BED_GY]
        toxic = np.array([r["grade"] >= 1 for r in rows])
        a_dose = auc([r["mean_dose_gy"] for r in rows], toxic)
        a_pet = auc([r["pet_rise"] for r in rows], toxic)
        assert a_dose < 0.85, (organ, a_dose)
        if organ != "Heart":
            assert a_pet > a_dose - 0.05, (organ, a_pet, a_dose)
    toxic = np.array([r["grade"] >= 1 for r in truth])
    pooled_dose = auc([r["mean_dose_gy"] for r in truth], toxic)
    pooled_pet = auc([r["pet_rise"] for r in truth], toxic)
    assert 0.5 < pooled_dose < 0.8 and pooled_pet > pooled_dose + 0.05


@pytest.mark.slow
def test_onset_follows_the_rising_signal(truth):
    onsets = [r["onset_fraction"] for r in truth if r["grade"] >= 1]
    # The first PET that can show a rise is fraction 2's; symptoms come at least a fraction later.
    assert all(3 <= k <= 6 for k in onsets)          # 6 = after the course
    assert all(r["onset_fraction"] is None for r in truth if r["grade"] == 0)
    assert np.median(onsets) >= 4
    # Onset is driven by the PET signal crossing: the more inflamed toxic organs react earlier
    # (one-sided Spearman: larger PET rise, earlier onset).
    toxic = [r for r in truth if r["grade"] >= 1]
    rho, p = spearmanr([r["pet_rise"] for r in toxic], [r["onset_fraction"] for r in toxic], alternative="less")
    assert rho < 0 and p < 0.01, (rho, p)


def test_draw_truth_equals_what_generate_cohort_wrote(small_cohort):
    written = json.loads((small_cohort.parent / "ground_truth.json").read_text())
    rows = [r for p in written["patients"] for r in p["organs"]]
    assert rows == json.loads(json.dumps(draw_truth(patients=3, fractions=3, seed=11, size="small")))
    outcomes = {(o.patient, o.organ): (o.grade, o.onset_fraction) for o in Cohort.load(small_cohort).outcomes()}
    assert outcomes == {(r["patient"], r["organ"]): (r["grade"], r["onset_fraction"]) for r in rows}


def test_parallel_generation_writes_the_same_files(tmp_path):
    """generate_cohort(workers=2) (used by test_cohort40) writes byte-identical files to workers=1."""
    from COMPASSLib.provenance import sha256_file

    def digests(root):
        return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}

    for w in (1, 2):
        generate_cohort(tmp_path / f"w{w}", patients=3, fractions=2, seed=4, size="small", workers=w)
    one, two = digests(tmp_path / "w1"), digests(tmp_path / "w2")
    assert len(one) > 100 and one == two
