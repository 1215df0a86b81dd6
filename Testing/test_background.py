"""Long jobs in a background process (what the Slicer module's Run twin uses): real child processes
running the real pipeline on the small synthetic cohort; progress that moves, results equal to the
same work done in this process, and a cancel that stops the child and leaves nothing half written."""
from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from COMPASSLib.background import Job
from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.pipeline import write_subset
from COMPASSLib.progress import Cancelled

SETTINGS = {"profile": "fast", "n_bootstrap": 50, "twin": {"epochs": 10}}


@pytest.fixture(scope="module")
def trained(small_cohort, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("background")
    manifest = write_subset(small_cohort, tmp / "cohort", fractions=2)
    seen = []
    result = Job("run", manifest, tmp / "out", settings=SETTINGS).wait(lambda f, m: seen.append((f, m)))
    return {"tmp": tmp, "manifest": manifest, "out": tmp / "out", "seen": seen, "result": result}


def test_run_job_reports_progress_and_writes_the_main_jobs_outputs(trained):
    out, seen = trained["out"], trained["seen"]
    for name in ("metrics.json", "risk.csv", "report.html", "model/model.json", "features.csv"):
        assert (out / name).is_file(), name
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len({round(f, 2) for f in fractions}) >= 5, "progress must move, not jump from 0 to 1"
    messages = {m for _, m in seen}
    assert any("features" in m for m in messages) and any("fold" in m for m in messages)
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]   # staging promoted, then gone


def test_score_job_equals_scoring_in_this_process(trained, tmp_path):
    from COMPASSLib.pipeline import score

    result = Job("score", trained["manifest"], tmp_path / "scored", model=trained["out"] / "model").wait()
    background = pd.read_csv(result["risk_csv"])
    here = score(trained["out"] / "model", trained["manifest"], tmp_path / "here")
    pd.testing.assert_frame_equal(background, pd.read_csv(tmp_path / "here" / "risk.csv"))
    assert len(here) == len(background) > 0


def test_cancel_stops_the_child_and_leaves_nothing(trained, tmp_path):
    out = tmp_path / "cancelled"
    job = Job("run", trained["manifest"], out, settings={**SETTINGS, "cache_dir": str(tmp_path / "cache")})
    with pytest.raises(Cancelled):
        job.wait(lambda f, m: "fold" not in m)   # cancel when the evaluation starts
    assert not job.running
    # the child's whole process group is gone: within seconds (a worker it started gets the same SIGTERM
    # and may take a moment to exit, longer on a busy machine), not only after a fixed 0.2 s
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(job.process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.killpg(job.process.pid, 0)
    assert not out.exists() or not any(out.iterdir()), "a cancelled job must leave OUT as it was"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_failed_job_is_one_compass_error_and_leaves_nothing(trained, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompassError, match="cohort manifest not found"):
        Job("run", tmp_path / "empty", tmp_path / "out", settings=SETTINGS).wait()
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_bad_jobs_are_refused_before_starting(tmp_path):
    with pytest.raises(InputError, match="output folder"):
        Job("run", tmp_path, "")
    with pytest.raises(InputError, match="model folder"):
        Job("score", tmp_path, tmp_path / "out")
    with pytest.raises(InputError, match="unknown background job"):
        Job("train", tmp_path, tmp_path / "out")
