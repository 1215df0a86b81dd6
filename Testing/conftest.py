"""Shared fixtures. Reference data lives in ../shared/data (read-only, never copied into the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COMPASS_SHARED_DATA", REPO.parent / "shared" / "data"))

# Deterministic CPU numerics in every test process.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data folder {SHARED_DATA} is missing (set COMPASS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory) -> Path:
    """A small synthetic cohort (3 patients x 3 fractions, coarse grid) written as real DICOM once per
    test session. Returns the path of its cohort.json. Tests must not modify it."""
    from COMPASSLib.synth import generate_cohort

    out = tmp_path_factory.mktemp("small_cohort")
    return Path(generate_cohort(out, patients=3, fractions=3, seed=11, size="small"))
