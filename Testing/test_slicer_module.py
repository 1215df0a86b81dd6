"""COMPASS/COMPASS.py's logic and self test on 3D Slicer's real framework (helpers_slicer_framework:
Slicer's ScriptedLoadableModule & co. from ../shared/slicer over the slicer-core wheel, the
application's scene with its real module logics): the logic loads a synthetic patient, shows a risk.csv
and saves the scene; COMPASSTest passes as a unittest in testing mode, and is skipped, naming the
package, where one is missing (testing mode installs nothing: the extension build servers); the module
finds the library beside it in developer mode."""
import io
import subprocess
import sys
import sysconfig
import unittest
from pathlib import Path

import pytest

from COMPASSLib import mrml
from COMPASSLib.errors import InputError
from helpers_slicer_framework import MODULE_FILE, PipRecorder, copy_module, slicer_framework  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[1]
TESTING = Path(__file__).resolve().parent


def test_logic_loads_patient_shows_risk_and_saves(slicer_framework, small_cohort, tmp_path):
    import pandas as pd

    from COMPASSLib.cohort import Cohort

    fw = slicer_framework()
    m = fw.load_module()
    logic = m.COMPASSLogic()
    pid = logic.patientIds(small_cohort)[0]
    steps = []
    nodes = logic.loadPatient(small_cohort, pid, progress=lambda v, msg: steps.append(msg))
    assert steps and nodes.browser and nodes.risk_table is None
    assert fw.scene.GetNodeByID(nodes.browser) is not None          # in the application's scene
    organs = Cohort.load(small_cohort).patient(pid).canonical_organs
    risk = tmp_path / "risk.csv"
    pd.DataFrame([{"patient": pid, "organ": o, "fraction": f, "risk": 0.25, "ci_low": 0.1, "ci_high": 0.4,
                   "warning": False} for o in organs for f in nodes.fractions]).to_csv(risk, index=False)
    table, chart = logic.showRisk(risk, pid, small_cohort)
    assert table.GetNumberOfRows() == len(organs) * len(nodes.fractions)
    assert chart.GetNumberOfPlotSeriesNodes() >= len(organs)
    assert fw.scene.GetNodeByID(table.GetID()) is table
    saved = logic.saveScene(tmp_path / "scene.mrb")
    back = mrml.load_scene(saved)
    try:
        assert back.GetFirstNodeByName(table.GetName()) is not None
    finally:
        mrml.release_scene(back)
    with pytest.raises(InputError):
        logic.showRisk(risk, "NOBODY", small_cohort)
    assert logic.device(False) == "cpu"


def _run_self_test(module):
    result = unittest.TextTestRunner(verbosity=0, stream=io.StringIO()).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(module.COMPASSTest))
    return result


def test_self_test_passes_in_testing_mode(slicer_framework):
    """As ctest runs it on the build servers (slicer.testing.runUnitTest: unittest's loader and runner)."""
    fw = slicer_framework(testing=True)
    m = fw.load_module()
    result = _run_self_test(m)
    assert result.wasSuccessful() and result.testsRun == 1 and not result.skipped, \
        result.errors + result.failures + result.skipped


def test_self_test_is_skipped_naming_a_missing_package_in_testing_mode(slicer_framework, tmp_path, monkeypatch):
    fw = slicer_framework(testing=True)
    pip = PipRecorder()
    monkeypatch.setattr(fw.slicer.util, "executePythonModule", pip)
    m = fw.load_module(copy_module(tmp_path, ["compass-absent-package>=1"]))
    result = _run_self_test(m)
    assert result.wasSuccessful(), result.errors + result.failures
    assert len(result.skipped) == 1, "a missing package in testing mode must skip the self test"
    assert "compass-absent-package" in result.skipped[0][1]
    fw.slicer.selfTests["COMPASS"]()          # Reload and Test: reports the skip, does not fail
    assert pip.calls == []


def test_developer_mode_finds_the_library_beside_the_module(tmp_path):
    """Source folder added to Slicer's module paths, nothing built or pip-installed: COMPASS.py must
    make COMPASSLib importable from the folder above it. Run without site (.pth of the editable
    install not processed) so the library is not importable otherwise."""
    code = ("import sys\n"
            f"sys.path.insert(0, {str(TESTING)!r})\n"
            "import importlib.util\n"
            "if importlib.util.find_spec('COMPASSLib') is not None:\n"
            "    sys.exit('COMPASSLib importable before the module ran')\n"
            "from pathlib import Path\n"
            "import helpers_slicer_framework as h\n"
            f"fw = h.SlicerFramework(Path({str(tmp_path)!r}), testing=True)\n"
            f"m = fw.load_module(Path({str(MODULE_FILE)!r}))\n"
            "print(m.mrml.__file__)\n")
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": "/usr/bin:/bin"},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout
    assert Path(proc.stdout.strip().splitlines()[-1]) == MODULE_FILE.parent.parent / "COMPASSLib" / "mrml" / "__init__.py"
