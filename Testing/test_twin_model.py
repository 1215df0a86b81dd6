"""CompassTwin: determinism, scikit-learn conventions, save/load without pickle, refusals, explanations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from COMPASSLib.errors import ModelError
from COMPASSLib.twin.model import CompassTwin
from helpers_twin import simulate_table

FAST = dict(epochs=25, hidden_size=8, n_bootstrap=10, ig_steps=8)


@pytest.fixture(scope="module")
def data():
    return simulate_table(patients=12, fractions=4, seed=3)


@pytest.fixture(scope="module")
def fitted(data):
    table, outcomes = data
    return CompassTwin(**FAST).fit(table, outcomes)


def _weights(twin):
    return {f"{i}.{k}": v for i, p in enumerate(twin.parts_) for k, v in p["autoencoder"].state_dict().items()}


def test_same_seed_gives_identical_weights_and_risks(data, fitted):
    table, outcomes = data
    again = CompassTwin(**FAST).fit(table, outcomes)
    w1, w2 = _weights(fitted), _weights(again)
    assert w1.keys() == w2.keys()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    np.testing.assert_array_equal(fitted.predict_proba(table), again.predict_proba(table))
    other = CompassTwin(**{**FAST, "seed": 1}).fit(table, outcomes)
    assert not all(torch.equal(w1[k], v) for k, v in _weights(other).items())


def test_sklearn_conventions(data, fitted):
    table, _ = data
    params = fitted.get_params()
    assert params["epochs"] == 25 and params["organ_mode"] == "shared"
    c = clone(fitted).set_params(latent_size=3)
    assert c.get_params()["latent_size"] == 3 and not hasattr(c, "parts_")
    p = fitted.predict_proba(table)
    assert p.shape == (len(fitted.trajectory_index(table)), 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_risk_trajectory_per_fraction_with_ci_warning_and_explanations(data, fitted):
    table, _ = data
    r = fitted.risk_trajectory(table)
    assert list(r.columns[:8]) == ["patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning",
                                   "threshold"]
    assert len(r) == len(table)                      # ragged trajectories: every real row, no padding
    assert ((r["ci_low"] <= r["ci_high"]) & r["risk"].between(0, 1)).all()
    assert (r["warning"] == (r["risk"] >= r["threshold"])).all()
    assert r["top_features"].str.match(r"^\w+@F\d+:[+-]\d").all()
    assert "ct_constant" not in fitted.used_features_   # constant column dropped by the selection


def test_risk_after_fraction_k_uses_fractions_up_to_k_only(data, fitted):
    """Causality: the early-warning claim needs the risk after k blind to later fractions."""
    table, _ = data
    early = table[table["fraction"] <= 2]
    full = fitted.risk_trajectory(table, explain=False)
    part = fitted.risk_trajectory(early, explain=False)
    np.testing.assert_allclose(full[full["fraction"] <= 2]["risk"].to_numpy(), part["risk"].to_numpy(), atol=1e-6)


def test_integrated_gradients_complete(data, fitted):
    """IG attributions of a state add up to logit(x) - logit(baseline): the explanation is faithful."""
    from COMPASSLib.twin import autoencoder
    from COMPASSLib.twin.explain import integrated_gradients
    from COMPASSLib.twin.model import _onehot
    from COMPASSLib.twin.trajectories import to_arrays, trajectory_keys

    table, _ = data
    part = fitted.parts_[0]
    keys = trajectory_keys(table)[:6]
    X, lengths, _ = to_arrays(table, part["preprocessor"].columns_, keys)
    x, _ = part["preprocessor"].transform(X, part["preprocessor"].columns_)
    oh = _onehot(keys, part["organs"])
    ig = integrated_gradients(part["autoencoder"], part["classifier"], x, oh, steps=64)
    clf, L = part["classifier"], fitted.latent_size

    def latent_logit(xx):
        return (autoencoder.latent(part["autoencoder"], xx, oh) @ (clf.coef_[:L] / clf.std_[:L]))

    expected = latent_logit(x) - latent_logit(np.zeros_like(x))
    got = ig.sum(axis=(2, 3))
    np.testing.assert_allclose(got, expected, atol=0.02 + 0.02 * np.abs(expected).max())


def test_save_load_round_trip_without_pickle(data, fitted, tmp_path, monkeypatch):
    import pickle

    table, _ = data
    folder = fitted.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "weights.safetensors"]

    def no_pickle(*a, **k):
        raise AssertionError("loading a twin must never unpickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    loaded = CompassTwin.load(folder)
    assert loaded.get_params() == fitted.get_params()
    a, b = fitted.risk_trajectory(table), loaded.risk_trajectory(table)
    np.testing.assert_array_equal(a["risk"], b["risk"])
    np.testing.assert_array_equal(a["ci_high"], b["ci_high"])
    assert (a["top_features"] == b["top_features"]).all()


def test_corrupt_model_folder_is_a_model_error(fitted, tmp_path):
    folder = fitted.save(tmp_path / "model")
    (folder / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="cannot read weights"):
        CompassTwin.load(folder)
    with pytest.raises(ModelError, match="missing file"):
        CompassTwin.load(tmp_path / "nowhere")


def test_missing_trained_features_are_named(data, fitted):
    table, _ = data
    with pytest.raises(ModelError, match="pet_suv_mean") as e:
        fitted.risk_trajectory(table.drop(columns=["pet_suv_mean", "clin_age"]))
    assert "clin_age" in str(e.value)


def test_bad_tables_are_model_errors(data):
    table, outcomes = data
    with pytest.raises(ModelError, match="lacks column"):
        CompassTwin(**FAST).fit(table.drop(columns=["fraction"]), outcomes)
    with pytest.raises(ModelError, match="twice"):
        CompassTwin(**FAST).fit(table.head(3).iloc[[0, 0, 1]], outcomes)
    with pytest.raises(ModelError, match="no trajectory"):
        CompassTwin(**FAST).fit(table.assign(patient=table["patient"] + "X"), outcomes)
    with pytest.raises(ModelError, match="organ_mode"):
        CompassTwin(**{**FAST, "organ_mode": "both"}).fit(table, outcomes)


def test_organ_mode_trains_one_twin_per_organ(data):
    table, outcomes = data
    twin = CompassTwin(**{**FAST, "organ_mode": "organ", "n_bootstrap": 0}).fit(table, outcomes)
    assert [p["organs"] for p in twin.parts_] == [["Esophagus"], ["Heart"], ["SpinalCord"]]
    r = twin.risk_trajectory(table, explain=False)
    assert len(r) == len(table) and r["risk"].between(0, 1).all()


def test_threshold_rules():
    from COMPASSLib.twin.classifier import choose_threshold

    y, p = [0, 0, 1, 1, 1], [0.1, 0.4, 0.35, 0.8, 0.9]
    assert choose_threshold(y, p, "youden", None) == pytest.approx(0.8)    # J = 2/3 - 0
    assert choose_threshold(y, p, "sensitivity", 1.0) == pytest.approx(0.35)
    with pytest.raises(ModelError, match="threshold rule"):
        choose_threshold(y, p, "max", 0.85)


def test_the_default_warning_threshold_catches_85_percent_of_the_training_toxicities(data, fitted):
    """The default operating point (docs/twin.md "The warning's operating point"): the highest threshold
    at which the training trajectories' risk after their last fraction warns at least 85 % of the toxic
    ones. A lower bar would warn more; a higher one would miss more than 15 %."""
    from COMPASSLib.twin.trajectories import labels_frame

    table, outcomes = data
    assert (fitted.threshold_rule, fitted.target_sensitivity) == ("sensitivity", 0.85)
    labels = labels_frame(outcomes).set_index(["patient", "organ"])["label"]
    final = fitted.predict_proba(table)[:, 1]
    y = np.array([labels[k] for k in fitted.trajectory_index(table)])
    threshold = fitted.parts_[0]["threshold"]
    toxic = np.sort(final[y == 1])
    assert (toxic >= threshold).mean() >= 0.85
    assert threshold in toxic                    # the highest such bar is one of the toxic risks
    assert (toxic > threshold).mean() < 0.85     # raising it past that risk misses more than 15 %


def test_prefix_weights_give_each_trajectory_one_vote():
    from COMPASSLib.twin.model import _prefix_weights

    lengths = np.array([5, 3, 1])
    ti, tk = np.nonzero(np.arange(5)[None, :] < lengths[:, None])
    for rule in ("uniform", "linear"):
        w = _prefix_weights(ti, tk, lengths, rule)
        assert np.allclose(np.bincount(ti, weights=w), 1.0)
    w = _prefix_weights(ti, tk, lengths, "linear")
    assert np.all(np.diff(w[ti == 0]) > 0)        # later fractions count more
    with pytest.raises(ModelError, match="prefix_weight"):
        _prefix_weights(ti, tk, lengths, "cubic")


def test_feature_families_share_the_reconstruction_equally():
    from COMPASSLib.twin.model import _feature_weights

    w = _feature_weights(["pet_a", "pet_b", "pet_c", "bed_mean_gy"], "groups")
    assert np.allclose(w, [1 / 3, 1 / 3, 1 / 3, 1.0])
    assert _feature_weights(["pet_a"], None) is None
    with pytest.raises(ModelError, match="balance"):
        _feature_weights(["pet_a"], "columns")


def test_supervised_term_is_deterministic_changes_the_latent_and_is_not_saved(data, fitted, tmp_path):
    table, outcomes = data
    a = CompassTwin(**FAST, supervision=1.0, balance="groups").fit(table, outcomes)
    b = CompassTwin(**FAST, supervision=1.0, balance="groups").fit(table, outcomes)
    assert all(torch.equal(v, _weights(b)[k]) for k, v in _weights(a).items())
    assert _weights(a).keys() == _weights(fitted).keys()               # the head is dropped after training
    assert any(not torch.equal(v, _weights(fitted)[k]) for k, v in _weights(a).items())
    a.save(tmp_path / "m")
    back = CompassTwin.load(tmp_path / "m")
    assert back.get_params()["supervision"] == 1.0
    assert np.allclose(back.predict_proba(table), a.predict_proba(table))


def test_balanced_class_weights_equalise_the_classes_and_are_saved(data, fitted, tmp_path):
    from COMPASSLib.twin.model import _class_weights

    y = np.array([1, 0, 0, 0, 1, 0])
    w = np.array([0.5, 0.5, 1.0, 0.2, 0.3, 0.5])
    assert _class_weights(y, w, None) is w
    b = _class_weights(y, w, "balanced")
    assert b[y == 1].sum() == pytest.approx(b[y == 0].sum())
    assert b.sum() == pytest.approx(w.sum())
    assert np.allclose(b[y == 0] / w[y == 0], b[y == 0][0] / w[y == 0][0])   # within a class: proportions kept
    with pytest.raises(ModelError, match="class_weight"):
        _class_weights(y, w, "auto")
    table, outcomes = data
    a = CompassTwin(**FAST, class_weight="balanced").fit(table, outcomes)
    # the same latent states (the autoencoder does not see the weights), a different classifier
    assert all(torch.equal(v, _weights(fitted)[k]) for k, v in _weights(a).items())
    assert not np.allclose(a.predict_proba(table), fitted.predict_proba(table))
    a.save(tmp_path / "m")
    back = CompassTwin.load(tmp_path / "m")
    assert back.get_params()["class_weight"] == "balanced"
    assert np.allclose(back.predict_proba(table), a.predict_proba(table))
