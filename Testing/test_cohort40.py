"""The twin against its baselines on a 40-patient synthetic cohort written as real DICOM (issues 3 and 5).

The cohort (40 patients x 5 fractions, `small` grid, fixed seed) is written by generate_cohort, its
fast-profile feature table extracted ONCE from the files (COMPASSLib.features.table.extract_cohort, as
`compass run --profile fast` does), and the leave-one-patient-out evaluation is the one pipeline.run
calls (twin.evaluate.lopo + metrics) on that table. Only the twin's training is lighter than the
default (fewer epochs, a smaller GRU, fewer bootstrap resamples) to fit the test budget; the cohort's
size is not reduced. The figures with the default settings are in docs/synthetic_cohort.md.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from COMPASSLib.cohort import Cohort
from COMPASSLib.features.settings import FeatureSettings
from COMPASSLib.features.table import extract_cohort
from COMPASSLib.synth import generate_cohort
from COMPASSLib.twin.evaluate import lopo, metrics
from COMPASSLib.twin.trajectories import labels_frame

# Every test here needs the 40-patient cohort written as DICOM and the twins trained on it.
pytestmark = pytest.mark.slow

SEED = 0
TWIN = dict(epochs=25, lr=0.03, hidden_size=8, latent_size=4, seed=0)   # lighter than the defaults: budget
N_BOOTSTRAP = 200


@pytest.fixture(scope="module")
def cohort40(tmp_path_factory):
    """(feature table, outcomes) of the written cohort; the table is extracted once for the module."""
    out = tmp_path_factory.mktemp("cohort40")
    cohort = Cohort.load(generate_cohort(out, patients=40, fractions=5, seed=SEED, size="small",
                                          workers=2))
    table = extract_cohort(cohort, FeatureSettings(profile="fast"), workers=2)
    assert not table.attrs.get("failures"), table.attrs.get("failures")
    return table, cohort.outcomes()


@pytest.fixture(scope="module")
def result40(cohort40):
    table, outcomes = cohort40
    return lopo(table, outcomes, TWIN)


@pytest.fixture(scope="module")
def metrics40(result40):
    return metrics(result40, n_bootstrap=N_BOOTSTRAP, seed=0)


def test_cohort_is_a_real_prediction_problem(cohort40):
    """Both classes in every organ, toxic rate 30-50 %, 120 trajectories of 5 fractions."""
    table, outcomes = cohort40
    labels = labels_frame(outcomes)
    assert len(labels) == 120 and table.groupby(["patient", "organ"]).ngroups == 120
    assert set(table["fraction"]) == {1, 2, 3, 4, 5}
    assert 0.3 <= labels["label"].mean() <= 0.5
    assert (labels.groupby("organ")["label"].nunique() == 2).all()


def test_twin_beats_lkb_and_warns_at_least_a_fraction_early(metrics40):
    m = metrics40
    assert m["n_trajectories"] == 120
    assert m["auc"]["value"] > m["lkb_auc"]["value"], (m["auc"], m["lkb_auc"])
    assert m["lead_time_fractions"]["value"] >= 1, m["lead_time_fractions"]


def test_shuffled_outcomes_fall_to_chance(cohort40, metrics40):
    """Each patient's outcomes given to another patient (seeded permutation): nothing is left to learn,
    so the twin's LOPO AUC must fall to chance: |AUC - 0.5| < 0.15. Not "0.5 inside the bootstrap 95 %
    CI": leave-one-out has a known negative bias under null labels (holding out a toxic patient lowers
    the training toxic rate, so held-out risks are anti-correlated with their labels), which the
    patient bootstrap does not measure; on this cohort permutations with seeds 5-8 gave 0.42, 0.39,
    0.45, 0.45, and 0.39 had a CI of 0.30-0.48. A leak of the held-out labels, or a twin that learns the
    patient rather than the signal, lifts the AUC well above 0.65. The real labels must do clearly better
    than the shuffled ones (their AUC above the shuffled CI), so a twin that learns nothing fails too."""
    table, outcomes = cohort40
    labels = labels_frame(outcomes)
    ids = sorted(labels["patient"].unique())
    rng = np.random.default_rng(7)
    shuffled = labels.assign(patient=labels["patient"].map(dict(zip(ids, rng.permutation(ids)))))
    m = metrics(lopo(table, shuffled, TWIN), n_bootstrap=N_BOOTSTRAP, seed=0)
    assert abs(m["auc"]["value"] - 0.5) < 0.15, m["auc"]
    assert metrics40["auc"]["value"] > m["auc"]["ci95"][1], (metrics40["auc"], m["auc"])


def test_toxic_organs_show_a_larger_pet_rise_in_the_files(cohort40):
    """The hidden model's PET signal is found again in the written PET series: the relative rise of the
    organ's mean SUV from the first to the last fraction (feature table, pet_suv_mean) is larger in
    toxic organs (one-sided Mann-Whitney U)."""
    table, outcomes = cohort40
    suv = table.pivot_table(index=["patient", "organ"], columns="fraction", values="pet_suv_mean")
    rise = (suv[5] / suv[1] - 1.0).rename("rise").reset_index()
    df = rise.merge(labels_frame(outcomes), on=["patient", "organ"])
    toxic, other = df.loc[df["label"] == 1, "rise"], df.loc[df["label"] == 0, "rise"]
    test = mannwhitneyu(toxic, other, alternative="greater")
    assert test.pvalue < 1e-4, test
    assert test.statistic / (len(toxic) * len(other)) > 0.7
    assert len(df) == 120
