"""One wrapper around pyradiomics' RadiomicsFeatureExtractor, driven by a YAML parameter file.

Columns are `<prefix>_<pyradiomics name>` with pyradiomics' image-type prefix `original_` dropped (other
image types, e.g. `wavelet-LLH_`, keep theirs): `dose_glcm_Contrast`, `ct_firstorder_Mean`, `pet_ngtdm_Busyness`.
pyradiomics' `diagnostics_*` entries are dropped; the parameters are recorded in the run's sidecar JSON.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from COMPASSLib.errors import FeatureError, InputError
from COMPASSLib.resources import resource_path

BUILTIN = ("dose", "ct", "pet")   # Resources/radiomics/<name>.yaml
_ORIGINAL = "original_"


def load_params(name_or_path) -> dict:
    """The parameter dict of a built-in file ('dose', 'ct', 'pet') or of a user's YAML/JSON file."""
    if isinstance(name_or_path, dict):
        return copy.deepcopy(name_or_path)
    if str(name_or_path) in BUILTIN:
        path = resource_path("radiomics", f"{name_or_path}.yaml")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError("pyradiomics parameter file not found", file=path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise InputError(f"invalid pyradiomics parameter file: {e}", file=path) from None
    if not isinstance(params, dict):
        raise InputError("pyradiomics parameter file must hold a mapping", file=path)
    return params


def _quiet_pyradiomics():
    # pyradiomics logs every class at INFO and warns on each extraction; the table is the output.
    logging.getLogger("radiomics").setLevel(logging.ERROR)


def make_extractor(params: dict, *, shape: bool = False, source=None):
    """A configured RadiomicsFeatureExtractor; `shape` keeps/drops the shape class (shape is computed once
    per organ, not per fraction). Invalid parameters raise InputError naming `source`."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    _quiet_pyradiomics()
    params = copy.deepcopy(params)
    classes = dict(params.get("featureClass") or {})
    if not shape:
        classes.pop("shape", None)
        classes.pop("shape2D", None)
    params["featureClass"] = classes
    try:
        return RadiomicsFeatureExtractor(params)
    except Exception as e:  # pykwalify SchemaError and friends: user-editable file, so report it plainly
        raise InputError(f"invalid pyradiomics parameters: {str(e).splitlines()[0]}", file=source) from None


def column_name(prefix: str, key: str) -> str:
    return f"{prefix}_{key[len(_ORIGINAL):] if key.startswith(_ORIGINAL) else key}"


def execute(extractor, image: sitk.Image, mask: sitk.Image, prefix: str, *, organ=None, patient=None,
            fraction=None) -> dict:
    """Run `extractor` on `image` inside `mask` (uint8 0/1). Returns {column: float}, diagnostics dropped."""
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        raise FeatureError(f"{prefix} radiomics: organ {organ} mask is empty", patient=patient, fraction=fraction)
    try:
        result = extractor.execute(sitk.Cast(image, sitk.sitkFloat32), sitk.Cast(mask, sitk.sitkUInt8), label=1)
    except (ValueError, RuntimeError) as e:
        raise FeatureError(f"{prefix} radiomics failed for organ {organ}: {e}", patient=patient,
                           fraction=fraction) from None
    return {column_name(prefix, k): float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


def extract(image: sitk.Image, mask: sitk.Image, params, prefix: str, *, shape: bool = False, **where) -> dict:
    """Convenience: one extraction with `params` (dict, built-in name or file)."""
    source = None if isinstance(params, dict) else params
    return execute(make_extractor(load_params(params), shape=shape, source=source), image, mask, prefix, **where)


def feature_columns(params: dict, prefix: str, *, shape: bool = False) -> list:
    """The columns `execute` returns for `params`, known without an image: used to fill NaN when a
    modality is missing, so the table's columns never depend on which scans happened to exist."""
    return list(_feature_columns(yaml.safe_dump(params, sort_keys=True), prefix, shape))


@functools.lru_cache(maxsize=32)
def _feature_columns(params_yaml: str, prefix: str, shape: bool) -> tuple:
    from radiomics import getFeatureClasses

    extractor = make_extractor(yaml.safe_load(params_yaml), shape=shape)
    classes = getFeatureClasses()
    cols = []
    for image_type in extractor.enabledImagetypes:
        if image_type != "Original":
            raise InputError(f"feature_columns: image type {image_type} needs an image to name its columns")
        for cls, enabled in extractor.enabledFeatures.items():
            names = enabled or [n for n, deprecated in classes[cls].getFeatureNames().items() if not deprecated]
            cols += [f"{prefix}_{cls}_{n}" for n in sorted(names)]
    return tuple(cols)


def nan_features(params: dict, prefix: str, *, shape: bool = False) -> dict:
    return {c: math.nan for c in feature_columns(params, prefix, shape=shape)}
