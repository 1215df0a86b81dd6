"""A `compass run` killed outright (SIGKILL: no cleanup runs) in the middle of the features, then in the
middle of the evaluation, and run again to completion gives the same metrics.json (but for provenance's
created, command and step timings) and a byte-equal risk.csv as an uninterrupted run; while killed runs come and go, OUT
holds nothing half written (only whole feature-cache entries, or the previous complete run's files), and
the staging folder a killed run leaves beside OUT is removed by the next run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from COMPASSLib.pipeline import write_subset

REPO = Path(__file__).resolve().parents[1]
FAST = ["--profile", "fast", "--epochs", "5", "--bootstrap", "20"]
OUTPUTS = ("metrics.json", "risk.csv", "features.csv", "lopo_risk.csv", "model/weights.safetensors", "report.html")


def _start(cohort, out):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "COMPASSLib", "run", str(cohort), "-o", str(out), *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _finish(process):
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def _kill_when(process, marker):
    """SIGKILL the run as soon as it prints a line holding `marker`; the lines it printed."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL, "".join(lines)   # it was killed, it did not finish
    return lines


def _metrics(out):
    m = json.loads((out / "metrics.json").read_text())
    for key in ("created", "command", "steps", "feature_tasks"):   # when and how long, not what
        m["provenance"].pop(key)
    return m


def _staging(folder):
    return [p.name for p in folder.iterdir() if ".partial-" in p.name]


def _same_as(out, ref):
    assert _metrics(out) == _metrics(ref)
    assert (out / "risk.csv").read_bytes() == (ref / "risk.csv").read_bytes()
    assert (out / "features.csv").read_bytes() == (ref / "features.csv").read_bytes()


@pytest.mark.slow
def test_killed_runs_rerun_to_the_uninterrupted_result(small_cohort, tmp_path):
    cohort = write_subset(small_cohort, tmp_path / "cohort", fractions=2)
    ref, out = tmp_path / "ref" / "out", tmp_path / "out"
    uninterrupted = _start(cohort, ref)   # side by side with the killed runs below (own folder and cache)

    # 1. killed in the middle of the features: one patient's entries cached, the next being computed
    _kill_when(_start(cohort, out), "features: 1/3 patients")
    assert sorted(os.listdir(out)) == ["cache"], "a killed run left more than the feature cache in OUT"
    cached = [p for p in (out / "cache").rglob("*") if p.is_file()]
    assert cached and all(p.suffix in (".json", ".npz") for p in cached)   # whole entries, no temporaries
    assert len(_staging(tmp_path)) == 1                                    # SIGKILL: no cleanup could run
    _finish(_start(cohort, out))
    assert not _staging(tmp_path), "the rerun did not remove the killed run's staging folder"
    _finish(uninterrupted)
    _same_as(out, ref)

    # 2. killed in the evaluation of a rerun into the same OUT: the complete outputs stay as they were
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    files = {name: (out / name).stat().st_ino for name in OUTPUTS}   # not even rewritten with equal bytes
    _kill_when(_start(cohort, out), "fold")
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before
    assert {name: (out / name).stat().st_ino for name in OUTPUTS} == files, "a killed run replaced files in OUT"
    _finish(_start(cohort, out))
    assert not _staging(tmp_path)
    _same_as(out, ref)
