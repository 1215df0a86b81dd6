"""Which torch device a run uses: one rule for the command line, the batch script and the Slicer module."""
from __future__ import annotations

from COMPASSLib.errors import InputError


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (torch is imported only here, on demand)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(name: str = "auto") -> str:
    """'auto': 'cuda' when a CUDA device is present, else 'cpu'; any other name ('cpu', 'cuda',
    'cuda:1') is returned as given once checked against what this machine has."""
    name = str(name or "auto").strip().lower()
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name.startswith("cuda") and not cuda_available():
        raise InputError(f"device {name!r} asked for, but torch sees no CUDA device here (use cpu or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"unknown device {name!r}: auto, cpu or cuda[:N]")
    return name
