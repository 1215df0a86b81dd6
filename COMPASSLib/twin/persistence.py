"""A twin model folder without pickle: `weights.safetensors` (the autoencoders' tensors, key
`part<i>.<parameter>`) and `model.json` (settings, trained feature names, per part the organs,
scaler/selection, logistic regression with its bootstrap ensemble, threshold, plus provenance).

This is the one place that writes and reads a model folder. It knows the twin's parts (autoencoder,
preprocessor, classifier) but not the estimator that joins them: `CompassTwin.save`/`load` call
`write`/`read` here, so the layers import one way only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from COMPASSLib.errors import ModelError

FORMAT = "compass-twin"
FORMAT_VERSION = 1


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
        save_file(tensors, str(tmp / "weights.safetensors"))
        write_json(tmp / "model.json", doc)
    return path


def read(path) -> ModelFile:
    """Read a model folder written by `write` (ModelError naming the file when it is not one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from COMPASSLib.atomic import read_json
    from COMPASSLib.twin import autoencoder
    from COMPASSLib.twin.classifier import LatentLogistic
    from COMPASSLib.twin.preprocess import Preprocessor

    path = Path(path)
    meta, weights = path / "model.json", path / "weights.safetensors"
    for f in (meta, weights):
        if not f.is_file():
            raise ModelError("not a COMPASS twin model folder (missing file)", file=f)
    doc = read_json(meta, "model.json", ModelError)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"not a {FORMAT} model of format version <= {FORMAT_VERSION}", file=meta)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ModelError(f"cannot read weights: {e}", file=weights) from None
    try:
        parts = []
        for i, p in enumerate(doc["parts"]):
            state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"part{i}.")}
            ae = autoencoder.build(*autoencoder.shape_of(state))
            ae.load_state_dict(state)
            parts.append({"organs": p["organs"], "threshold": float(p["threshold"]),
                          "loss": p.get("final_loss"), "autoencoder": ae.eval(),
                          "preprocessor": Preprocessor.from_dict(p["preprocessor"]),
                          "classifier": LatentLogistic.from_dict(p["classifier"])})
        return ModelFile(dict(doc["settings"]), list(doc["feature_names"]), parts, dict(doc.get("provenance") or {}))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelError(f"model folder is inconsistent: {e}", file=path) from None
