"""A twin model folder without pickle: `weights.safetensors` (the autoencoders' tensors, key
`part<i>.<parameter>`) and `model.json` (settings, trained feature names, per part the organs,
scaler/selection, logistic regression with its bootstrap ensemble, threshold, plus provenance).

This is the one place that writes and reads a model folder. It knows the twin's parts (autoencoder,
preprocessor, classifier) but not the estimator that joins them: `CompassTwin.save`/`load` call
`write`/`read` here, so the layers import one way only.

Integrity: model.json's `checksums` entry records the sha256 of weights.safetensors (its bytes) and of
model.json's own content (every other entry, as canonical JSON: keys sorted, separators "," and ":",
ASCII escapes, the way Python's json writes it). `read` verifies both and names the file that changed
(ModelError): an edited model.json (e.g. two feature names swapped) or flipped weight bytes would
otherwise load and score differently without a word. A folder saved before checksums existed loads
with a logged warning. Whatever the checksums say, the arrays of every part are checked against the
feature names and the weights' shapes (preprocessor columns/mean/std, classifier mean/std/coef and
bootstrap ensemble, autoencoder input and latent sizes): a mismatch is a ModelError naming model.json.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from COMPASSLib.errors import ModelError

log = logging.getLogger(__name__)

FORMAT = "compass-twin"
FORMAT_VERSION = 1
CHECKSUMS = "checksums"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"


@dataclass
class ModelFile:
    """What a model folder holds, with the parts rebuilt (autoencoder modules, preprocessors, classifiers)."""
    settings: dict
    feature_names: list
    parts: list
    provenance: dict = field(default_factory=dict)


def write(path, settings: dict, feature_names: list, parts: list, extra=None) -> Path:
    """Write a model folder atomically. `parts`: dicts with organs, threshold, loss, autoencoder (torch
    module), preprocessor and classifier (with to_dict)."""
    from safetensors.torch import save_file

    from COMPASSLib.atomic import _json_default as json_default
    from COMPASSLib.atomic import atomic_dir, write_json
    from COMPASSLib.provenance import record

    path = Path(path)
    tensors, docs = {}, []
    for i, p in enumerate(parts):
        for name, t in p["autoencoder"].state_dict().items():
            tensors[f"part{i}.{name}"] = t.detach().cpu().contiguous()
        docs.append({"organs": p["organs"], "threshold": p["threshold"], "final_loss": p["loss"],
                     "preprocessor": p["preprocessor"].to_dict(), "classifier": p["classifier"].to_dict()})
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "settings": settings,
           "feature_names": list(feature_names), "parts": docs,
           "provenance": record(settings, **(extra or {}))}
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        # the checksum of what a reader will parse back (numpy scalars etc. as write_json writes them)
        doc = json.loads(json.dumps(doc, default=json_default))
        doc[CHECKSUMS] = {"algorithm": "sha256", WEIGHTS_FILE: _sha256_file(tmp / WEIGHTS_FILE),
                          META_FILE: document_sha256(doc),
                          "canonical": "model.json without this entry: json.dumps(sort_keys=True, "
                                       "separators=(',', ':'), ensure_ascii=True)"}
        write_json(tmp / META_FILE, doc)
    return path


def _sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def document_sha256(doc: dict) -> str:
    """sha256 of model.json's content without its checksums entry, as canonical JSON."""
    body = {k: v for k, v in doc.items() if k != CHECKSUMS}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _verify_document(doc, meta) -> dict | None:
    """The recorded checksums (None for a model saved before them); ModelError when model.json changed."""
    recorded = doc.get(CHECKSUMS)
    if recorded is None:
        log.warning("%s has no checksums (saved by a COMPASS before they were recorded): loaded without an "
                    "integrity check; save the model again to add them", meta)
        return None
    if not isinstance(recorded, dict) or not isinstance(recorded.get(META_FILE), str) \
            or not isinstance(recorded.get(WEIGHTS_FILE), str):
        raise ModelError(f"model.json's '{CHECKSUMS}' entry is malformed", file=meta)
    if recorded.get("algorithm", "sha256") != "sha256":
        raise ModelError(f"model.json checksum algorithm {recorded.get('algorithm')!r} is not sha256", file=meta)
    if document_sha256(doc) != recorded[META_FILE]:
        raise ModelError("model.json was changed after the model was saved (its content no longer matches the "
                         "sha256 recorded in it): refusing a model whose settings, feature names or parameters "
                         "may have been edited", file=meta)
    return recorded


def _check_part(i, p, feature_names, state, meta) -> None:
    """Array shapes of part i against the feature names and the weights; ModelError naming model.json."""
    import numpy as np

    def fail(what):
        return ModelError(f"part {i}: {what}", file=meta)

    pre, clf = p["preprocessor"], p["classifier"]
    organs = p["organs"]
    if not isinstance(organs, list) or not organs or len(set(map(str, organs))) != len(organs):
        raise fail(f"organs {organs!r} must be a non-empty list of distinct names")
    columns = list(pre["columns"])
    unknown = [c for c in columns if c not in set(feature_names)]
    if unknown:
        raise fail(f"preprocessor columns not among feature_names: {', '.join(map(str, unknown[:10]))}")
    if len(set(columns)) != len(columns):
        raise fail("preprocessor columns repeat a feature")
    for key in ("mean", "std"):
        values = np.asarray(pre[key], dtype=float)
        if values.shape != (len(columns),):
            raise fail(f"preprocessor {key} has shape {values.shape}, expected ({len(columns)},) "
                       f"(one per preprocessor column)")
        if not np.isfinite(values).all():
            raise fail(f"preprocessor {key} is not finite")
    n_features, n_organs, _, latent = _autoencoder_shape(state)
    if n_features != len(columns) or n_organs != len(organs):
        raise fail(f"weights take {n_features} features and {n_organs} organs, model.json lists "
                   f"{len(columns)} preprocessor columns and {len(organs)} organs")
    d = latent + len(organs)
    for key in ("mean", "std", "coef"):
        values = np.asarray(clf[key], dtype=float)
        if values.shape != (d,):
            raise fail(f"classifier {key} has shape {values.shape}, expected ({d},) (latent size {latent} + "
                       f"{len(organs)} organ codes)")
    boot = np.asarray(clf["boot_coef"], dtype=float)
    n_boot = len(np.asarray(clf["boot_intercept"], dtype=float).reshape(-1))
    if boot.size != n_boot * d:
        raise fail(f"classifier bootstrap ensemble has {boot.size} coefficients for {n_boot} intercepts of "
                   f"{d} each")
    threshold = float(p["threshold"])
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise fail(f"threshold {threshold!r} is not a probability")


def _autoencoder_shape(state):
    from COMPASSLib.twin import autoencoder

    return autoencoder.shape_of(state)


def read(path) -> ModelFile:
    """Read a model folder written by `write` (ModelError naming the file when it is not one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from COMPASSLib.atomic import read_json
    from COMPASSLib.twin import autoencoder
    from COMPASSLib.twin.classifier import LatentLogistic
    from COMPASSLib.twin.preprocess import Preprocessor

    path = Path(path)
    meta, weights = path / META_FILE, path / WEIGHTS_FILE
    for f in (meta, weights):
        if not f.is_file():
            raise ModelError("not a COMPASS twin model folder (missing file)", file=f)
    doc = read_json(meta, "model.json", ModelError)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"not a {FORMAT} model of format version <= {FORMAT_VERSION}", file=meta)
    recorded = _verify_document(doc, meta)
    weights_changed = recorded is not None and _sha256_file(weights) != recorded[WEIGHTS_FILE]
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        changed = " (and its sha256 is not the one recorded in model.json)" if weights_changed else ""
        raise ModelError(f"cannot read weights: {e}{changed}", file=weights) from None
    if weights_changed:
        raise ModelError("weights.safetensors was changed after the model was saved (its sha256 is not the one "
                         "recorded in model.json)", file=weights)
    try:
        feature_names = list(doc["feature_names"])
        parts = []
        for i, p in enumerate(doc["parts"]):
            state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"part{i}.")}
            try:
                _check_part(i, p, feature_names, state, meta)
            except (KeyError, TypeError, ValueError) as e:
                raise ModelError(f"part {i} is inconsistent: {type(e).__name__} {e}", file=meta) from None
            ae = autoencoder.build(*autoencoder.shape_of(state))
            ae.load_state_dict(state)
            parts.append({"organs": p["organs"], "threshold": float(p["threshold"]),
                          "loss": p.get("final_loss"), "autoencoder": ae.eval(),
                          "preprocessor": Preprocessor.from_dict(p["preprocessor"]),
                          "classifier": LatentLogistic.from_dict(p["classifier"])})
        return ModelFile(dict(doc["settings"]), feature_names, parts, dict(doc.get("provenance") or {}))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelError(f"model folder is inconsistent: {e}", file=path) from None
