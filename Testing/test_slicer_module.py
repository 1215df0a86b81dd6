"""The module file COMPASS/COMPASS.py on the slicer-core wheel: its logic (no Qt) loads a synthetic
patient, shows a risk.csv, saves the scene, and its self test (COMPASSTest) passes headless."""
from __future__ import annotations

import importlib.util
import unittest
from pathlib import Path

import pytest

import slicer  # slicer-core is a pinned test dependency: fail, never skip

from COMPASSLib import mrml  # noqa: E402
from COMPASSLib.errors import InputError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def module():
    spec = importlib.util.spec_from_file_location("COMPASS", REPO / "COMPASS" / "COMPASS.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def logic(module):
    mrml.new_scene()            # slicer.mrmlScene for the logic, with the module logics attached
    return module.COMPASSLogic()


@pytest.fixture(scope="module")
def cohort_json(small_cohort):
    return small_cohort


def test_logic_loads_patient_shows_risk_and_saves(logic, cohort_json, tmp_path):
    import pandas as pd

    pid = logic.patientIds(cohort_json)[0]
    steps = []
    nodes = logic.loadPatient(cohort_json, pid, progress=lambda v, m: steps.append(m))
    assert steps and nodes.browser and nodes.risk_table is None
    from COMPASSLib.cohort import Cohort

    organs = Cohort.load(cohort_json).patient(pid).canonical_organs
    risk = tmp_path / "risk.csv"
    pd.DataFrame([{"patient": pid, "organ": o, "fraction": f, "risk": 0.25, "ci_low": 0.1, "ci_high": 0.4,
                   "warning": False} for o in organs for f in nodes.fractions]).to_csv(risk, index=False)
    table, chart = logic.showRisk(risk, pid, cohort_json)
    assert table.GetNumberOfRows() == len(organs) * len(nodes.fractions)
    assert chart.GetNumberOfPlotSeriesNodes() >= len(organs)
    saved = logic.saveScene(tmp_path / "scene.mrb")
    back = mrml.load_scene(saved)
    assert back.GetFirstNodeByName(table.GetName()) is not None
    with pytest.raises(InputError):
        logic.showRisk(risk, "NOBODY", cohort_json)


def test_requirements_and_device(module, logic):
    reqs = module.COMPASSLogic.requirements()
    assert any(r.startswith("torch") for r in reqs)
    assert module.COMPASSLogic.missingRequirements() == []     # everything is in .venv
    asked = []
    assert logic.ensureDependencies(askUser=lambda text: asked.append(text) or False) is True
    assert asked == []                                          # nothing missing: never asks
    assert logic.device(False) == "cpu"
    assert logic.device(True) in ("cpu", "cuda")


def test_missing_package_is_only_installed_after_asking(module, logic, monkeypatch):
    monkeypatch.setattr(module.COMPASSLogic, "missingRequirements", classmethod(lambda cls: ["nopkg-compass>=1"]))
    installed = []
    monkeypatch.setattr(slicer.util, "pip_install", lambda reqs, **kw: installed.append(reqs), raising=False)
    asked = []
    assert logic.ensureDependencies(askUser=lambda text: asked.append(text) or False) is False
    assert asked and "nopkg-compass" in asked[0] and installed == []
    logic.ensureDependencies(askUser=lambda text: True)
    assert installed == [["nopkg-compass>=1"]]


def test_self_test_runs_headless(module):
    mrml.new_scene()
    result = unittest.TextTestRunner(verbosity=0).run(module.COMPASSTest("test_COMPASS_sample_patient"))
    assert result.wasSuccessful(), result.errors + result.failures


def test_developer_mode_finds_the_library_beside_the_module(tmp_path):
    """Source folder added to Slicer's module paths, nothing built or pip-installed: COMPASS.py must
    make COMPASSLib importable from the folder above it. Run without site (.pth of the editable
    install not processed) so the library is not importable otherwise."""
    import subprocess
    import sys
    import sysconfig

    code = ("import importlib.util, sys\n"
            "try:\n    import COMPASSLib\n    sys.exit('COMPASSLib importable before the module ran')\n"
            "except ImportError:\n    pass\n"
            f"spec = importlib.util.spec_from_file_location('COMPASS', {str(REPO / 'COMPASS' / 'COMPASS.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(m.mrml.__file__)\n")
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": "/usr/bin:/bin"},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout
    assert Path(proc.stdout.strip().splitlines()[-1]) == REPO / "COMPASSLib" / "mrml" / "__init__.py"
