"""What made an output: settings, library versions and input checksums, recorded beside every output."""
from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import platform
import sys
from pathlib import Path

_LIBRARIES = ("numpy", "scipy", "SimpleITK", "pydicom", "pyradiomics", "scikit-learn", "torch",
              "safetensors", "pandas", "PyYAML", "numba")


def library_versions() -> dict:
    from COMPASSLib import __version__

    versions = {"COMPASSLib": __version__, "python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths) -> str:
    """One checksum over several files (order-independent by path, content-dependent)."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def record(settings: dict | None = None, inputs: dict | None = None, **extra) -> dict:
    """The provenance block written beside outputs (as JSON)."""
    out = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "versions": library_versions(),
        "settings": settings or {},
    }
    if inputs:
        out["inputs"] = inputs
    out.update(extra)
    return out
