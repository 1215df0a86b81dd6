"""Shared fixtures. Reference data lives in ../shared/data (read-only, never copied into the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COMPASS_SHARED_DATA", REPO.parent / "shared" / "data"))

# Deterministic CPU numerics in every test process.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Reports without slice renders (seconds per patient to build its scene) except where a test asks for
# them (Testing/test_report.py renders them for real).
os.environ.setdefault("COMPASS_REPORT_IMAGES", "0")


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


@pytest.fixture(scope="session")
def small_twin(small_cohort, tmp_path_factory) -> Path:
    """A twin fitted on `small_cohort` (fast profile, few epochs) saved as `compass run` saves it: the
    model folder, with features.csv (the what-if forecast's training residuals) and the filled feature
    cache beside it. Returns the model folder."""
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.features.settings import FeatureSettings
    from COMPASSLib.features.table import extract_cohort
    from COMPASSLib.twin.model import CompassTwin

    out = tmp_path_factory.mktemp("small_twin")
    fs = FeatureSettings(profile="fast")
    cohort = Cohort.load(small_cohort)
    table = extract_cohort(cohort, fs, cache_dir=out / "cache")
    table.to_csv(out / "features.csv", index=False)
    twin = CompassTwin(epochs=10, n_bootstrap=10).fit(table, cohort.outcomes())
    twin.save(out / "model", extra={"feature_settings": fs.to_dict()})
    return out / "model"
