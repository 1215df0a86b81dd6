"""Leave-one-patient-out evaluation: no leakage, permutation check, metrics, baselines on the same folds.
(The LKB test vectors themselves are the dose engineer's, in the tests of COMPASSLib.ntcp.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from COMPASSLib import ntcp
from COMPASSLib.twin import baselines
from COMPASSLib.twin.evaluate import fit_fold, lopo, metrics
from COMPASSLib.twin.trajectories import labels_frame
from helpers_twin import simulate_table

LOPO = dict(epochs=40, lr=0.03, hidden_size=8, latent_size=4)   # small and quick: the test budget


@pytest.fixture(scope="module")
def cohort40():
    return simulate_table(patients=40, fractions=5, seed=0)


@pytest.fixture(scope="module")
def result40(cohort40):
    table, outcomes = cohort40
    return lopo(table, outcomes, LOPO)


@pytest.mark.parametrize("held", ["SIM002", ["SIM002", "SIM006"]], ids=["lopo", "group-fold"])
@pytest.mark.parametrize("extra", [{}, {"supervision": 0.5, "balance": "groups", "class_weight": "balanced"}],
                         ids=["default", "supervised-balanced"])
def test_held_out_patient_never_reaches_a_fitted_step(extra, held):
    # the supervised term reads labels inside the autoencoder and the class weights the training prevalence:
    # both must see the training patients' only;
    # a grouped K-fold holds out several patients at once: none of them may reach the fold
    table, outcomes = simulate_table(patients=8, fractions=4, seed=5)
    labels = labels_frame(outcomes)
    params = dict(epochs=15, hidden_size=8, n_bootstrap=5, **extra)
    changed = table.copy()
    rows = changed["patient"].isin([held] if isinstance(held, str) else held)
    num = [c for c in changed.columns if c not in ("patient", "organ", "fraction")]
    changed.loc[rows, num] = changed.loc[rows, num] * 7.0 + 100.0   # wildly different held-out features

    def state(twin):
        p = twin.parts_[0]
        return (p["preprocessor"].to_dict(), p["classifier"].to_dict(), p["threshold"],
                p["autoencoder"].state_dict())

    a, b = state(fit_fold(table, labels, held, params)), state(fit_fold(changed, labels, held, params))
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2]
    assert all(torch.equal(a[3][k], b[3][k]) for k in a[3])
    # ... whereas the same change to a training patient does change the fold (the test can fail)
    c = state(fit_fold(changed, labels, "SIM003", params))
    d = state(fit_fold(table, labels, "SIM003", params))
    assert c[0] != d[0]
    # ... and the held-out patient's outcomes do not reach the fold either (they would through the
    # supervised term or the selection if the fold saw them)
    flipped = labels.assign(label=np.where(labels["patient"].isin([held] if isinstance(held, str) else held),
                                           1 - labels["label"], labels["label"]))
    e = state(fit_fold(table, flipped, held, params))
    assert a[0] == e[0] and a[1] == e[1] and all(torch.equal(a[3][k], e[3][k]) for k in a[3])


@pytest.mark.slow
def test_twin_beats_lkb_and_warns_early_on_40_patients(result40):
    m = metrics(result40, n_bootstrap=200)
    for k in ("auc", "sensitivity", "specificity", "brier", "lkb_auc", "mean_dose_auc"):
        assert set(m[k]) == {"value", "ci95"}
        lo, hi = m[k]["ci95"]
        assert lo <= m[k]["value"] <= hi
    assert m["n_trajectories"] == 120
    assert m["auc"]["value"] > 0.75
    assert m["auc"]["value"] > m["lkb_auc"]["value"] + 0.1
    assert m["lead_time_fractions"]["value"] >= 1
    # the signal builds up: later fractions separate better than the first
    pf = {r["fraction"]: r["auc"] for r in m["per_fraction_auc"]}
    assert pf[5] > pf[1]
    assert sum(r["n"] for r in m["calibration"]) == 120
    assert m["baselines"]["mean_dose_column"] == "dvh_mean_gy"


@pytest.mark.slow
def test_permuted_outcomes_fall_to_chance(cohort40, result40):
    table, outcomes = cohort40
    rng = np.random.default_rng(7)
    ids = outcomes["patient"].unique()
    shuffled = outcomes.assign(patient=outcomes["patient"].map(dict(zip(ids, rng.permutation(ids)))))
    m = metrics(lopo(table, shuffled, LOPO), n_bootstrap=200)
    real = metrics(result40, n_bootstrap=0)
    assert 0.3 < m["auc"]["value"] < 0.68
    assert m["auc"]["ci95"][0] < 0.5 < m["auc"]["ci95"][1] or abs(m["auc"]["value"] - 0.5) < 0.1
    assert real["auc"]["value"] - m["auc"]["value"] > 0.2


def test_lkb_baseline_uses_the_organs_published_set_on_eqd2():
    import pandas as pd

    from COMPASSLib.resources import alpha_beta

    heart = ntcp.parameter_sets()["burman1991_heart"]
    assert baselines.lkb_set("Heart") == heart
    assert baselines.lkb_set("Esophagus").name == "burman1991_esophagus"   # n 0.06 = organs.yaml geud_n
    assert baselines.lkb_set("GTV") is None
    # gEUD of EQD2 at TD50 -> 0.5; the same from a BED gEUD scaled by 1 + 2/(a/b)
    t = pd.DataFrame({"patient": ["A", "A"], "organ": ["Heart", "GTV"], "fraction": [1, 1],
                      "dvh_eqd2_geud_gy": [heart.td50_gy, 60.0]})
    p, info = baselines.lkb_ntcp(t)
    assert p[0] == pytest.approx(0.5) and np.isnan(p[1]) and info["geud_of"] == "eqd2"
    bed = heart.td50_gy * (1 + 2 / alpha_beta("Heart"))
    p, info = baselines.lkb_ntcp(t.drop(columns="dvh_eqd2_geud_gy").assign(bed_geud_gy=[bed, 1.0],
                                                                            bed_inc_geud_gy=0.0))
    assert p[0] == pytest.approx(0.5) and info["geud_column"] == "bed_geud_gy"


def test_mean_dose_baseline_per_organ():
    import pandas as pd

    rows = pd.DataFrame({"organ": ["Heart"] * 6 + ["Esophagus"] * 6,
                         "dvh_dose_mean_gy": [1, 2, 3, 10, 11, 12, 30, 31, 32, 40, 41, 42.0],
                         "dvh_dose_fx_mean_gy": 0.0})
    y = np.array([0, 0, 0, 1, 1, 1] * 2)
    assert baselines.mean_dose_column(list(rows.columns)) == "dvh_dose_mean_gy"
    model = baselines.MeanDoseLogistic("dvh_dose_mean_gy").fit(rows, y)
    p = model.predict_proba(pd.DataFrame({"organ": ["Heart", "Esophagus"], "dvh_dose_mean_gy": [12.0, 12.0]}))
    assert p[0] > 0.5 > p[1]     # 12 Gy is high for this heart, low for this esophagus


def test_grouped_folds_partition_the_patients_deterministically():
    from COMPASSLib.errors import InputError
    from COMPASSLib.twin.folds import AUTO_LOPO_MAX_PATIENTS, plan_folds

    patients = [f"P{i:03d}" for i in range(23)]
    plan = plan_folds(reversed(patients), "group-kfold:5", seed=3)
    assert plan.scheme == "group-kfold" and plan.k == 5
    assert sorted(p for f in plan.folds for p in f) == patients            # each patient in exactly one fold
    assert {len(f) for f in plan.folds} == {4, 5}
    assert plan.folds == plan_folds(patients, "group-kfold:5", seed=3).folds  # input order does not matter
    assert plan.folds != plan_folds(patients, "group-kfold:5", seed=4).folds  # the seed does
    assert plan_folds(patients, "lopo").folds == [[p] for p in patients]
    auto = plan_folds(patients, None)
    assert auto.scheme == "lopo" and str(AUTO_LOPO_MAX_PATIENTS) in auto.reason
    many = plan_folds([f"P{i:04d}" for i in range(AUTO_LOPO_MAX_PATIENTS + 1)], None)
    assert (many.scheme, many.k) == ("group-kfold", 10) and "above" in many.reason
    for bad in ("kfold:5", "group-kfold:1", "group-kfold:x", "loo"):
        with pytest.raises(InputError, match="lopo"):
            plan_folds(patients, bad)
    with pytest.raises(InputError, match="at least 30 patients"):
        plan_folds(patients, "group-kfold:30")


def test_grouped_kfold_predicts_every_trajectory_once_and_records_the_folds():
    from COMPASSLib.twin.evaluate import cross_validate

    table, outcomes = simulate_table(patients=9, fractions=3, seed=2)
    result = cross_validate(table, outcomes, dict(epochs=5, hidden_size=8), cv="group-kfold:3")
    m = metrics(result, n_bootstrap=20)
    assert m["cv"]["scheme"] == "group-kfold" and m["cv"]["k"] == 3 and len(m["cv"]["folds"]) == 3
    assert len(result.trajectories) == 27 and not result.trajectories.duplicated(["patient", "organ"]).any()
    assert len(result.per_fraction) == len(table)
    for k in ("calibration_slope", "calibration_intercept"):
        assert set(m[k]) == {"value", "ci95"}


def test_calibration_slope_and_intercept_match_scikit_learn_and_known_cases():
    from sklearn.linear_model import LogisticRegression

    from COMPASSLib.twin.evaluate import calibration_fit

    rng = np.random.default_rng(0)
    logit = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-logit))).astype(int)
    # the reference: an unpenalised logistic regression of y on logit(p) by scikit-learn's own solver
    for scale, shift in ((1.0, 0.0), (2.0, 0.0), (1.0, 1.0)):
        p = 1 / (1 + np.exp(-(scale * logit + shift)))
        a, b = calibration_fit(y, p)
        ref = LogisticRegression(penalty=None, tol=1e-12, max_iter=10000).fit(np.log(p / (1 - p))[:, None], y)
        assert a == pytest.approx(ref.intercept_[0], abs=1e-6) and b == pytest.approx(ref.coef_[0, 0], abs=1e-6)
        # well calibrated -> slope 1, intercept 0; risks twice as extreme on the logit -> slope 1/2;
        # risks shifted up by 1 on the logit -> intercept -1
        assert b == pytest.approx(1 / scale, abs=0.08) and a == pytest.approx(-shift / scale, abs=0.1)
    # no finite answer: one outcome only, constant risks, perfectly separated outcomes
    assert np.isnan(calibration_fit(np.zeros(10), np.linspace(0.1, 0.9, 10))).all()
    assert np.isnan(calibration_fit(np.r_[np.zeros(5), np.ones(5)], np.full(10, 0.3))).all()
    assert np.isnan(calibration_fit(np.r_[np.zeros(5), np.ones(5)], np.linspace(0.1, 0.9, 10))).all()
