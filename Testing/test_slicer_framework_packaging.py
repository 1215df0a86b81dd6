"""The module's dependency handling through Slicer's real `slicer.packaging` (pip_check, pip_ensure,
pip_install and its progress dialog code, load_requirements), with only the pip subprocess replaced:
`slicer.util.executePythonModule`, the one function packaging.py spawns pip with, is a recorder
(helpers_slicer_framework.PipRecorder). A fresh Slicer is imitated by hiding installed distributions
from importlib.metadata (HiddenDistributions); the PyTorch extension's PyTorchUtils is a recording
stand-in with its real API (it is another extension, not in ../shared).

One question for everything that is missing; nothing installed (or torch imported) without consent;
torch only through PyTorchUtils and pyradiomics only from SlicerRadiomics, never pip; pip gets the
constraints file that pins every package Slicer bundles at its version; testing mode installs nothing."""
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from COMPASSLib.errors import CompassError
from helpers_slicer_framework import (SHARED_SLICER, HiddenDistributions, PipRecorder, copy_module,
                                      fake_pytorch_utils, slicer_framework)  # noqa: F401 - fixture


def bundled_with_slicer() -> dict:
    """Name -> version of the packages Slicer bundles, as ../shared/slicer/README.md lists them."""
    text = " ".join((SHARED_SLICER / "README.md").read_text(encoding="utf-8").split())
    sentence = re.search(r"bundles, among others: (.*?)\(", text).group(1)
    found = dict(re.findall(r"([A-Za-z][\w.-]*) (\d+(?:\.\d+)+)", sentence))
    assert {"numpy", "scipy", "SimpleITK", "pydicom", "pillow", "packaging", "requests"} <= set(found), found
    return {canonicalize_name(k): v for k, v in found.items()}


@pytest.fixture
def app(slicer_framework, monkeypatch):
    """The module on the real framework outside testing mode, pip recorded, Slicer's own prompts
    recorded (COMPASS asks through askUser: Slicer's pip_ensure/PyTorchUtils must not ask again)."""
    fw = slicer_framework(testing=False)
    fw.pip = PipRecorder()
    monkeypatch.setattr(fw.slicer.util, "executePythonModule", fw.pip)
    fw.slicer_prompts = []
    monkeypatch.setattr(fw.slicer.util, "confirmOkCancelDisplay",
                        lambda text, *a, **k: fw.slicer_prompts.append(text) or True)
    return fw


def _names(pip_args) -> set:
    return {canonicalize_name(Requirement(a).name) for a in PipRecorder.requirements_of(pip_args)}


def test_one_question_then_torch_from_the_pytorch_extension_and_pip_with_constraints(app, monkeypatch):
    m = app.load_module()
    hidden = HiddenDistributions(monkeypatch, ["torch", "scikit-image", "pandas"])
    app.pip.on_install = hidden.reveal
    torch_utils = fake_pytorch_utils(hidden)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", torch_utils)
    asked = []
    logic = m.COMPASSLogic()
    assert logic.ensureDependencies(askUser=lambda text: asked.append(text) or True) is True
    installs = app.pip.installs()
    assert len(installs) == 1, installs
    constraints = PipRecorder.constraints_of(installs[0])
    assert constraints, f"pip install without constraints: {installs[0]}"
    assert Path(constraints).resolve() == Path(m.__file__).parent / "Resources" / "constraints.txt"
    pinned = {canonicalize_name(r.name): str(r.specifier) for r in app.packaging.load_requirements(constraints)}
    for name, version in bundled_with_slicer().items():
        assert pinned.get(name) == f"=={version}", f"{name} not pinned at Slicer's {version}: {pinned.get(name)}"
    assert _names(installs[0]) == {"scikit-image", "pandas"}
    assert torch_utils.calls[0][:2] == ("installTorch", False), torch_utils.calls   # asked already: no confirmation
    assert str(torch_utils.calls[0][2]).startswith(">="), torch_utils.calls
    assert ("torchInstalled",) not in torch_utils.calls     # the real one imports torch
    assert len(asked) == 1
    for name in ("scikit-image", "pandas", "torch"):
        assert name in asked[0], name
    assert app.slicer_prompts == []                         # no second question from pip_ensure
    # satisfied now: no question, no install
    assert logic.ensureDependencies(askUser=lambda text: asked.append(text) or True) is True
    assert len(asked) == 1 and len(app.pip.installs()) == 1


def test_declining_installs_nothing_and_imports_nothing(app, monkeypatch):
    m = app.load_module()
    HiddenDistributions(monkeypatch, ["torch", "pandas"])
    torch_utils = fake_pytorch_utils()
    monkeypatch.setitem(sys.modules, "PyTorchUtils", torch_utils)
    asked = []
    assert m.COMPASSLogic().ensureDependencies(askUser=lambda text: asked.append(text) or False) is False
    assert len(asked) == 1
    assert app.pip.calls == [] and torch_utils.calls == [] and app.slicer_prompts == []


def test_pyradiomics_comes_from_slicer_radiomics_never_from_pip(app, monkeypatch):
    m = app.load_module()
    HiddenDistributions(monkeypatch, ["pyradiomics", "pandas"])
    monkeypatch.setitem(sys.modules, "PyTorchUtils", fake_pytorch_utils())
    asked = []
    with pytest.raises(CompassError, match="SlicerRadiomics"):
        m.COMPASSLogic().ensureDependencies(askUser=lambda text: asked.append(text) or True)
    assert asked == [] and app.pip.calls == []


def test_torch_is_never_pip_installed_without_the_pytorch_extension(app, monkeypatch):
    m = app.load_module()
    HiddenDistributions(monkeypatch, ["torch"])
    monkeypatch.delitem(sys.modules, "PyTorchUtils", raising=False)
    asked = []
    with pytest.raises(CompassError, match="PyTorch"):
        m.COMPASSLogic().ensureDependencies(askUser=lambda text: asked.append(text) or True)
    assert asked == [] and app.pip.calls == []


def test_testing_mode_installs_nothing_and_asks_nothing(slicer_framework, monkeypatch):
    fw = slicer_framework(testing=True)
    pip = PipRecorder()
    monkeypatch.setattr(fw.slicer.util, "executePythonModule", pip)
    m = fw.load_module()
    HiddenDistributions(monkeypatch, ["pandas"])
    asked = []
    assert m.COMPASSLogic().ensureDependencies(askUser=lambda text: asked.append(text) or True) is False
    assert asked == [] and pip.calls == []


def test_requirements_install_with_pip_on_slicers_python(slicer_framework):
    """requirements.txt through the real load_requirements: no pyradiomics (no wheels) and no torch
    (PyTorch extension); satisfied here (the test environment installs the same packages); the extension
    packages are declared with the extensions that bring them."""
    fw = slicer_framework()
    m = fw.load_module()
    reqs = [Requirement(r) for r in m.COMPASSLogic.requirements()]
    names = {canonicalize_name(r.name) for r in reqs}
    assert not names & {"pyradiomics", "torch", "torchvision"}, names
    assert {"scikit-image", "pandas", "pyyaml", "scikit-learn", "safetensors"} <= names
    assert not names & {"numpy", "scipy", "simpleitk"}               # bundled with Slicer
    assert all(fw.packaging.pip_check(str(r)) for r in reqs), [str(r) for r in reqs if not fw.packaging.pip_check(str(r))]
    assert {canonicalize_name(Requirement(r).name): e for r, e in m.EXTENSION_REQUIREMENTS.items()} == \
        {"torch": "PyTorch", "pyradiomics": "SlicerRadiomics"}
    assert m.COMPASSLogic.missingDependencies() == []


def test_a_missing_package_is_asked_for_by_name(slicer_framework, tmp_path, monkeypatch):
    """A package missing from requirements.txt's point of view (not installed anywhere) is named in
    the one question and handed to pip_ensure with the constraints."""
    fw = slicer_framework(testing=False)
    pip = PipRecorder()
    monkeypatch.setattr(fw.slicer.util, "executePythonModule", pip)
    m = fw.load_module(copy_module(tmp_path, ["compass-absent-package>=1"]))
    asked = []
    with pytest.raises(CompassError, match="compass-absent-package"):      # pip "succeeded", nothing appeared
        m.COMPASSLogic().ensureDependencies(askUser=lambda text: asked.append(text) or True)
    assert len(asked) == 1 and "compass-absent-package>=1" in asked[0]
    (args,) = pip.installs()
    assert _names(args) == {"compass-absent-package"} and PipRecorder.constraints_of(args)
