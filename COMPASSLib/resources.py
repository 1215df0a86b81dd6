"""Find and read the tables and settings in Resources/ (organs, alpha/beta, synonyms, NTCP parameter
sets, pyradiomics YAML files) from a source checkout, a pip install and Slicer's install tree alike."""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import yaml

from COMPASSLib.errors import InputError

_HERE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def resources_dir() -> Path:
    """The Resources folder: $COMPASS_RESOURCES, the package's own copy (pip install), or the folder
    beside the package (source checkout and the Slicer install tree, where CMake installs both)."""
    candidates = []
    if os.environ.get("COMPASS_RESOURCES"):
        candidates.append(Path(os.environ["COMPASS_RESOURCES"]))
    candidates += [_HERE / "Resources", _HERE.parent / "Resources", _HERE.parent / "COMPASSLibResources"]
    for c in candidates:
        if (c / "organs.yaml").is_file():
            return c
    raise InputError("COMPASS Resources folder not found (looked in: "
                     + ", ".join(str(c) for c in candidates) + ")")


def resource_path(*parts) -> Path:
    p = resources_dir().joinpath(*parts)
    if not p.exists():
        raise InputError("missing COMPASS resource", file=p)
    return p


def load_yaml(*parts) -> dict:
    p = resource_path(*parts)
    try:
        with open(p, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise InputError(f"invalid YAML: {e}", file=p) from None


@functools.lru_cache(maxsize=None)
def organ_table() -> dict:
    """Canonical organs -> {alpha_beta_gy, geud_n, synonyms, ...} (Resources/organs.yaml)."""
    return load_yaml("organs.yaml")["organs"]


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.lru_cache(maxsize=None)
def _synonym_index() -> dict:
    index = {}
    for canonical, info in organ_table().items():
        for s in [canonical, *info.get("synonyms", [])]:
            index[_normalise(s)] = canonical
    return index


def canonical_organ(roi_name: str) -> str | None:
    """Canonical organ name for an ROI name ('Spinal Cord', 'SPINAL_CORD', 'Cord' -> 'SpinalCord'),
    or None when the name is not in the synonym table."""
    return _synonym_index().get(_normalise(roi_name))


def alpha_beta(organ: str, overrides: dict | None = None) -> float:
    """alpha/beta in Gy for a canonical organ; `overrides` (organ -> Gy) wins over the table."""
    if overrides and organ in overrides:
        return float(overrides[organ])
    table = organ_table()
    if organ not in table:
        raise InputError(f"no alpha/beta for organ {organ!r}; known: {', '.join(table)}")
    return float(table[organ]["alpha_beta_gy"])


def is_envelope(organ: str) -> bool:
    """True for structures that enclose the organs (BODY/External: organs.yaml `envelope: true`): they
    give the background alpha/beta and never win over an organ's own (dose.alpha_beta_map)."""
    return bool(organ_table().get(organ, {}).get("envelope", False))


def geud_n(organ: str) -> float:
    return float(organ_table()[organ]["geud_n"])
