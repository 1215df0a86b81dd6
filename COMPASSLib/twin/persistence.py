"""A twin model folder without pickle: `weights.safetensors` (the autoencoders' tensors, key
`part<i>.<parameter>`) and `model.json` (settings, trained feature names, per part the organs,
scaler/selection, logistic regression with its bootstrap ensemble, threshold, plus provenance)."""
from __future__ import annotations

import json
from pathlib import Path

from COMPASSLib.errors import ModelError

FORMAT = "compass-twin"
FORMAT_VERSION = 1


def save(twin, path, extra=None) -> Path:
    from safetensors.torch import save_file

    from COMPASSLib.atomic import atomic_dir, write_json
    from COMPASSLib.provenance import record

    twin._check_fitted()
    path = Path(path)
    tensors, parts = {}, []
    for i, p in enumerate(twin.parts_):
        for name, t in p["autoencoder"].state_dict().items():
            tensors[f"part{i}.{name}"] = t.detach().cpu().contiguous()
        parts.append({"organs": p["organs"], "threshold": p["threshold"], "final_loss": p["loss"],
                      "preprocessor": p["preprocessor"].to_dict(), "classifier": p["classifier"].to_dict()})
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "settings": twin.get_params(),
           "feature_names": list(twin.feature_names_in_), "parts": parts,
           "provenance": record(twin.get_params(), **(extra or {}))}
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / "weights.safetensors"))
        write_json(tmp / "model.json", doc)
    return path


def load(path):
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from COMPASSLib.twin import autoencoder
    from COMPASSLib.twin.classifier import LatentLogistic
    from COMPASSLib.twin.model import CompassTwin
    from COMPASSLib.twin.preprocess import Preprocessor

    path = Path(path)
    meta, weights = path / "model.json", path / "weights.safetensors"
    for f in (meta, weights):
        if not f.is_file():
            raise ModelError("not a COMPASS twin model folder (missing file)", file=f)
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"model.json is not valid JSON: {e}", file=meta) from None
    if doc.get("format") != FORMAT or doc.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"not a {FORMAT} model of format version <= {FORMAT_VERSION}", file=meta)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ModelError(f"cannot read weights: {e}", file=weights) from None
    try:
        twin = CompassTwin(**doc["settings"])
        twin.feature_names_in_ = np.array(doc["feature_names"], dtype=object)
        twin.n_features_in_ = len(doc["feature_names"])
        twin.parts_ = []
        for i, p in enumerate(doc["parts"]):
            state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"part{i}.")}
            ae = autoencoder.build(*autoencoder.shape_of(state))
            ae.load_state_dict(state)
            twin.parts_.append({"organs": p["organs"], "threshold": float(p["threshold"]),
                                "loss": p.get("final_loss"), "autoencoder": ae.eval(),
                                "preprocessor": Preprocessor.from_dict(p["preprocessor"]),
                                "classifier": LatentLogistic.from_dict(p["classifier"])})
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelError(f"model folder is inconsistent: {e}", file=path) from None
    return twin
