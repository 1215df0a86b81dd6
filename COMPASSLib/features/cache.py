"""The feature cache: one entry per patient and fraction, keyed by content, safe to share.

Key of fraction k: a chained sha256 over the settings (with the pyradiomics parameters' content), the
feature-code version, the patient's organ map, the planning files and the files of fractions 1..k.
Cumulative BED after k depends on every earlier dose, and the chain makes the key of k change whenever
any of them does. An entry holds the rows of k (JSON) and the cumulative maps after k (.npz, no pickle),
so adding fraction k+1 computes only k+1 from them. Entries are written atomically, maps first and rows
last: an entry counts once complete, so concurrent writers of the same key (Dask retries, two runs on
shared storage) can only write the same bytes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from COMPASSLib.atomic import safe_filename

# Bump when the numbers a given input and settings produce change: old cache entries then stop matching.
# 2, 3: texture-map (tex_) numerics changed at the last digits (3: compiled MCC, cells); 4: warnings of a fraction
# whose structure set names an organ differently list the unmapped ROI names (the rows are unchanged)
FEATURE_CODE_VERSION = "4"


def digest(*parts) -> str:
    """sha256 over the parts (str or bytes), each closed by a NUL so that ("ab", "c") != ("a", "bc")."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def files_digest(cohort, files) -> str:
    """Content and name of each file (names order the series; a renamed copy of a cohort still matches)."""
    from COMPASSLib.provenance import sha256_file

    return digest(*[f"{Path(f).name}:{sha256_file(cohort.path(f))}" for f in sorted(files)]) if files else ""


def fraction_digest(cohort, fraction) -> str:
    from COMPASSLib.cohort import MODALITIES

    return digest(*[f"{m}={files_digest(cohort, fraction.files(m))}" for m in MODALITIES])


def settings_json(settings) -> str:
    """The resolved settings as canonical JSON: what the key and the sidecar record."""
    return json.dumps(settings.resolved(), sort_keys=True, default=str)


class FeatureCache:
    """The entries of one patient under ROOT/<patient>/ (no root: nothing is cached)."""

    def __init__(self, root, patient_id):
        self.dir = Path(root) / safe_filename(patient_id) if root else None

    def _paths(self, key):
        return self.dir / f"{key}.json", self.dir / f"{key}.npz"

    def load_rows(self, key):
        """The entry's {"rows", "warnings"}, or None when it is absent or damaged (then recomputed)."""
        if self.dir is None:
            return None
        rows_path, maps_path = self._paths(key)
        if not (rows_path.is_file() and maps_path.is_file()):
            return None
        try:
            return json.loads(rows_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def load_maps(self, key) -> dict:
        with np.load(self._paths(key)[1], allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def save(self, key, rows, maps: dict):
        if self.dir is None:
            return
        from COMPASSLib.atomic import atomic_path, write_text

        rows_path, maps_path = self._paths(key)
        with atomic_path(maps_path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **maps)
        write_text(rows_path, json.dumps(rows, allow_nan=True))   # rows last: an entry counts once complete
