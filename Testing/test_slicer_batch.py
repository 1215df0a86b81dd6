"""The batch entry point under plain Python with the slicer-core wheel: one .mrb per patient that reads
back with the patient's nodes, and clear exit codes on bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import slicer  # noqa: F401  (slicer-core is a pinned test dependency: fail, never skip)

from COMPASSLib import batch, mrml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cohort_json(small_cohort):
    return small_cohort


def write_risk(cohort_json, path):
    """A risk.csv in `compass run`'s format for every patient, organ and fraction of the cohort."""
    import pandas as pd

    from COMPASSLib.cohort import Cohort

    cohort = Cohort.load(cohort_json)
    rng = np.random.default_rng(1)
    rows = [{"patient": p.id, "organ": o, "fraction": f.index, "risk": round(float(rng.uniform()), 6),
             "ci_low": 0.0, "ci_high": 1.0, "warning": 0}
            for p in cohort.patients for o in p.canonical_organs for f in p.fractions]
    pd.DataFrame(rows).to_csv(path, index=False)
    return cohort


def test_batch_script_writes_an_mrb_that_reads_back(cohort_json, tmp_path):
    risk = tmp_path / "risk.csv"
    cohort = write_risk(cohort_json, risk)
    pid = cohort.patient_ids[-1]
    out = tmp_path / "out"
    # As Slicer's --python-script runs it: the file itself, not the package.
    proc = subprocess.run([sys.executable, str(REPO / "COMPASSLib" / "batch.py"), "--cohort", str(cohort_json),
                           "--out", str(out), "--risk", str(risk), "--patients", pid],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mrb = out / "scenes" / f"{pid}.mrb"
    assert mrb.is_file() and (out / "scenes" / "provenance.json").is_file()
    scene = mrml.load_scene(mrb)
    try:
        _check_scene(scene, cohort, pid, risk)
    finally:
        mrml.release_scene(scene)   # a scene left with its logics would count in the memory test below


def _check_scene(scene, cohort, pid, risk):
    n = len(cohort.patient(pid).fractions)
    # each fraction's data once, as an item of its modality's Sequence (the views show the browser's proxies)
    seqs = {s.GetAttribute("COMPASS.modality"): s for s in mrml.nodes_by_class(scene, "vtkMRMLSequenceNode")
            if s.GetAttribute("COMPASS.patient") == pid}
    assert {"ct", "dose", "segmentation", "bed", "eqd2"} <= set(seqs)
    for modality in ("bed", "segmentation"):
        items = [seqs[modality].GetNthDataNode(i) for i in range(seqs[modality].GetNumberOfDataNodes())]
        assert len(items) == n and all(item.GetAttribute("COMPASS.patient") == pid for item in items)
    tables = [t for t in mrml.nodes_by_class(scene, "vtkMRMLTableNode") if t.GetAttribute("COMPASS.content") == "risk"]
    assert len(tables) == 1
    column = tables[0].GetTable().GetColumnByName("risk")
    import pandas as pd

    expected = pd.read_csv(risk).query("patient == @pid").sort_values(["organ", "fraction"])["risk"].to_numpy()
    np.testing.assert_allclose([column.GetValue(i) for i in range(column.GetNumberOfValues())], expected, rtol=1e-12)
    assert len(mrml.nodes_by_class(scene, "vtkMRMLPlotChartNode")) == 1


def test_batch_errors_exit_with_code_and_message(tmp_path, capsys):
    assert batch.main(["--cohort", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                       "--risk", str(tmp_path / "r.csv")]) == 2
    assert "cohort manifest not found" in capsys.readouterr().err
    assert batch.main(["--out", str(tmp_path)]) == 1          # --cohort missing: argparse usage error


def test_batch_unknown_patient_is_an_input_error(cohort_json, tmp_path, capsys):
    risk = tmp_path / "risk.csv"
    write_risk(cohort_json, risk)
    code = batch.main(["--cohort", str(cohort_json), "--out", str(tmp_path / "o"), "--risk", str(risk),
                       "--patients", "NOBODY"])
    assert code == 2 and "NOBODY" in capsys.readouterr().err


def _resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _SlicerAppStandIn:
    """`slicer.app` as the batch script sees it inside `Slicer --no-main-window` (the only stand-in here:
    scenes, nodes and logics are the real slicer-core ones)."""

    def testingEnabled(self):
        return False


def test_batch_trains_with_the_warning_operating_point_asked_for(small_cohort, tmp_path, capsys):
    """--threshold-rule / --target-sensitivity as in `compass run` reach the twin the batch job trains, and
    are refused, before anything is read or written, where no twin is trained."""
    import json

    from COMPASSLib.pipeline import write_subset

    cohort = write_subset(small_cohort, tmp_path / "cohort", fractions=2)
    assert batch.main(["--cohort", str(cohort), "--out", str(tmp_path / "scored"), "--model", str(tmp_path / "m"),
                       "--target-sensitivity", "0.9"]) == 2
    assert "a --model keeps its own" in capsys.readouterr().err and not (tmp_path / "scored").exists()
    assert batch.main(["--cohort", str(cohort), "--out", str(tmp_path / "o"), "--threshold-rule", "youden",
                       "--target-sensitivity", "0.9"]) == 2
    assert "needs --threshold-rule sensitivity" in capsys.readouterr().err
    out = tmp_path / "out"
    assert batch.main(["--cohort", str(cohort), "--out", str(out), "--profile", "fast", "--device", "cpu",
                       "--no-scenes", "--target-sensitivity", "0.9"]) == 0
    settings = json.loads((out / "model" / "model.json").read_text())["settings"]
    assert (settings["threshold_rule"], settings["target_sensitivity"]) == ("sensitivity", 0.9)


def test_batch_in_slicers_mode_keeps_scenes_and_memory_flat(tmp_path_factory, monkeypatch, capsys):
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.mrml import scene as mrml_scene
    from COMPASSLib.synth import generate_cohort

    folder = tmp_path_factory.mktemp("six")
    cohort_path = generate_cohort(folder / "cohort", patients=6, fractions=2, seed=5, size="small")
    cohort = write_risk(cohort_path, folder / "risk.csv")
    risk = mrml.read_risk(folder / "risk.csv")
    monkeypatch.setattr(slicer, "app", _SlicerAppStandIn(), raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)   # the app's main scene
    assert mrml.has_app()
    held, rss = [], []
    before = len(mrml_scene._LOGICS)       # scenes other tests of this process still hold

    def after_each(pid, path):
        held.append(len(mrml_scene._LOGICS) - before)
        rss.append(_resident_mib())

    scenes = batch.write_scenes(cohort, cohort.patient_ids, risk, folder / "out", after_each=after_each)
    assert len(scenes) == 6 and all(p.is_file() for p in scenes)
    with capsys.disabled():
        print(f"\nbatch in Slicer's mode, 6 patients: scenes held after each {held}; "
              f"resident MiB after each {[round(r) for r in rss]}")
    assert held == [0] * 6, "every patient's scene must be released after its .mrb is written"
    # after the first patient (libraries and caches loaded) memory stays flat: less than a patient's worth
    assert max(rss[1:]) - rss[1] < 40, rss
