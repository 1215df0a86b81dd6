"""Issue 15, "nothing wrong passes silently", for model folders: an edited model.json or flipped weight bytes
used to load and score differently without a word, and a scaler one entry short failed with a numpy
broadcast error at scoring. Now model.json records the sha256 of the weights and of its own content,
loading verifies both and names the file that changed, and the arrays are checked against the
feature names at load (twin/persistence.py)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from COMPASSLib.errors import ModelError
from COMPASSLib.twin import persistence
from COMPASSLib.twin.model import CompassTwin
from helpers_twin import simulate_table

FAST = dict(epochs=8, hidden_size=8, latent_size=4, n_bootstrap=5, ig_steps=4)


@pytest.fixture(scope="module")
def data():
    return simulate_table(patients=8, fractions=3, seed=5)


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    table, outcomes = data
    folder = tmp_path_factory.mktemp("model") / "model"
    CompassTwin(**FAST).fit(table, outcomes).save(folder)
    return folder


def _copy(saved, tmp_path):
    import shutil

    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def _edit_json(folder, edit, keep_checksums=True, recompute=False):
    meta = folder / "model.json"
    doc = json.loads(meta.read_text())
    edit(doc)
    if not keep_checksums:
        doc.pop("checksums", None)
    elif recompute:
        doc["checksums"]["model.json"] = persistence.document_sha256(doc)
    meta.write_text(json.dumps(doc, indent=2))
    return meta


def _swap_first_two_columns(doc):
    columns = doc["parts"][0]["preprocessor"]["columns"]
    columns[0], columns[1] = columns[1], columns[0]


def test_saved_model_records_checksums_and_loads(saved, data):
    doc = json.loads((saved / "model.json").read_text())
    assert set(doc["checksums"]) >= {"algorithm", "weights.safetensors", "model.json"}
    assert doc["checksums"]["model.json"] == persistence.document_sha256(doc)
    CompassTwin.load(saved).risk_trajectory(data[0], explain=False)


def test_swapped_feature_names_in_model_json_are_refused(saved, data, tmp_path):
    folder = _copy(saved, tmp_path)
    meta = _edit_json(folder, _swap_first_two_columns)
    with pytest.raises(ModelError, match="model.json was changed after the model was saved") as err:
        CompassTwin.load(folder)
    assert err.value.file == str(meta) and "\n" not in str(err.value)


def test_flipped_weight_bytes_are_refused(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    weights = folder / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0x40                       # a byte of the last tensor's data: still a valid safetensors file
    weights.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="weights.safetensors was changed") as err:
        CompassTwin.load(folder)
    assert err.value.file == str(weights)


def test_model_saved_before_checksums_loads_with_a_warning(saved, data, tmp_path, caplog):
    folder = _copy(saved, tmp_path)
    _edit_json(folder, lambda doc: None, keep_checksums=False)
    with caplog.at_level(logging.WARNING, logger="COMPASSLib.twin.persistence"):
        twin = CompassTwin.load(folder)
    assert "no checksums" in caplog.text and "model.json" in caplog.text
    a = CompassTwin.load(saved).risk_trajectory(data[0], explain=False)
    np.testing.assert_array_equal(twin.risk_trajectory(data[0], explain=False)["risk"], a["risk"])


@pytest.mark.parametrize("keep_checksums, recompute", [(False, False), (True, True)])
def test_scaler_mean_one_entry_short_is_a_model_error_at_load(saved, tmp_path, keep_checksums, recompute):
    """Without checksums (an old model) or with recomputed ones, the shapes are still checked at load."""
    folder = _copy(saved, tmp_path)

    def shorten(doc):
        doc["parts"][0]["preprocessor"]["mean"] = doc["parts"][0]["preprocessor"]["mean"][:-1]
    meta = _edit_json(folder, shorten, keep_checksums=keep_checksums, recompute=recompute)
    with pytest.raises(ModelError, match=r"part 0: preprocessor mean has shape \(\d+,\), expected") as err:
        CompassTwin.load(folder)
    assert err.value.file == str(meta)


def test_classifier_and_unknown_columns_are_checked(saved, tmp_path):
    folder = _copy(saved, tmp_path)

    def bad_coef(doc):
        doc["parts"][0]["classifier"]["coef"] = doc["parts"][0]["classifier"]["coef"] + [0.0]
    _edit_json(folder, bad_coef, keep_checksums=False)
    with pytest.raises(ModelError, match="classifier coef has shape"):
        CompassTwin.load(folder)

    folder = _copy(saved, tmp_path / "b")

    def unknown(doc):
        doc["parts"][0]["preprocessor"]["columns"][0] = "pet_made_up"
    _edit_json(folder, unknown, keep_checksums=False)
    with pytest.raises(ModelError, match="pet_made_up"):
        CompassTwin.load(folder)
