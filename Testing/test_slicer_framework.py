"""COMPASS/COMPASS.py on 3D Slicer's own framework (../shared/slicer over the slicer-core wheel; only
Qt/CTK widget classes and slicer.app are stand-ins, see helpers_slicer_framework.py): the module's base
classes are Slicer's, its parameter node goes through the real parameterNodeWrapper onto a real
vtkMRMLScriptedModuleNode and is bound to the real .ui by the wrapper's own GUI connectors, every button
checks the dependencies first, nothing Slicer does not bundle is imported before the user agreed, numba's
cache goes to a per-user folder, and the real Sample Data module lists the COMPASS cohort and runs its
loader."""
import ast
import inspect
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from helpers_slicer_framework import (FRAMEWORK, MODULE_FILE, NOT_BUNDLED, PipRecorder, copy_module, qt_module,
                                      slicer_framework)  # noqa: F401 - fixture

TESTING = Path(__file__).resolve().parent
ABSENT = "compass-absent-package>=1"   # a requirement nothing satisfies: a package missing from Slicer


def test_module_classes_are_slicers_own(slicer_framework):
    fw = slicer_framework()
    m = fw.load_module()
    framework_file = str(FRAMEWORK / "ScriptedLoadableModule.py")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                 "ScriptedLoadableModuleTest"):
        assert inspect.getfile(getattr(m, name)) == framework_file, name
    assert m.COMPASSLogic.__mro__[1] is fw.ScriptedLoadableModule.ScriptedLoadableModuleLogic
    assert fw.parameterNodeWrapper.isParameterNodeWrapper(m.COMPASSParameterNode)
    assert set(m.COMPASSParameterNode.allParameters) >= {"cohortPath", "useGPU", "textureRadius"}
    assert inspect.getfile(m._) == str(FRAMEWORK / "i18n.py")
    assert m.slicer.packaging is fw.packaging and inspect.getfile(fw.packaging) == str(FRAMEWORK / "packaging.py")
    assert fw.slicer.selfTests["COMPASS"] == m._instance.runTest     # registered by the real base class


def test_module_has_no_fallback_for_a_missing_framework():
    """No ImportError/ModuleNotFoundError handler and no home-made framework class: on slicer-core
    without ../shared/slicer the module does not import (the tests above then cannot pass either)."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    handlers = [ast.unparse(h.type) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.type is not None]
    assert not [h for h in handlers if "ImportError" in h or "ModuleNotFoundError" in h], handlers
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    assert not defined & {"ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget",
                          "ScriptedLoadableModuleTest", "VTKObservationMixin", "parameterNodeWrapper", "WithinRange", "_"}


def _values(param_node_class, tmp_path):
    """A value for every field, different from its default, of the field's type."""
    import typing

    values = {}
    for name, info in param_node_class.allParameters.items():
        base = typing.get_args(info.unalteredType)[0] if typing.get_origin(info.unalteredType) is typing.Annotated \
            else info.unalteredType
        default = info.default.value
        if base is Path:
            values[name] = tmp_path / f"{name}.d"
        elif base is bool:
            values[name] = not default
        elif base is str:
            values[name] = default + "-x"
        elif base is int:
            values[name] = default + 1
        elif base is float:
            values[name] = round(default + 0.05, 2)
        else:
            raise AssertionError(f"add a value for {name}: {info.unalteredType}")
    return values


def test_parameter_node_round_trips_every_field_on_a_real_scripted_module_node(slicer_framework, tmp_path):
    fw = slicer_framework()
    m = fw.load_module()
    logic = m.COMPASSLogic()
    node = logic.getParameterNode()
    raw = node.parameterNode
    assert raw.IsA("vtkMRMLScriptedModuleNode") and raw.GetAttribute("ModuleName") == "COMPASS"
    assert fw.scene.GetNodeByID(raw.GetID()) is raw
    values = _values(m.COMPASSParameterNode, tmp_path)
    assert set(values) == {"cohortPath", "modelPath", "outputPath", "riskPath", "useGPU", "warningSensitivity",
                           "textureOrgan", "textureFeatures", "textureRadius", "textureFraction", "whatIfAfter",
                           "whatIfScales"}
    for name, value in values.items():
        setattr(node, name, value)
    again = m.COMPASSLogic().getParameterNode()          # the scene's singleton node, read afresh
    assert again.parameterNode is raw
    for name, value in values.items():
        assert getattr(node, name) == value, name
        assert getattr(again, name) == value, name
        assert raw.GetParameter(name) == str(value), name
    with pytest.raises(ValueError):
        node.textureRadius = 4                            # WithinRange(1, 3), checked by the real validator
    with pytest.raises(ValueError):
        node.textureFraction = 0
    with pytest.raises(ValueError):
        node.whatIfAfter = 0                              # WithinRange(1, 60)
    with pytest.raises(ValueError):
        node.warningSensitivity = 1.0                     # WithinRange(0.5, 0.99): a threshold that warns everyone
    with pytest.raises(TypeError):
        node.useGPU = "yes"
    assert node.textureRadius == values["textureRadius"]


def test_widget_binds_the_ui_to_the_parameter_node(slicer_framework, tmp_path):
    """The real .ui (as widgets), the real connectGui and GUI connectors: every SlicerParameterName
    widget shows its field, and edits go both ways."""
    fw = slicer_framework()
    m = fw.load_module()
    w = fw.widget(m)
    p = w._parameterNode
    bound = {v.property("SlicerParameterName"): v for v in vars(w.ui).values() if v.property("SlicerParameterName")}
    assert set(bound) == set(m.COMPASSParameterNode.allParameters)
    assert bound["textureOrgan"].text == "Heart" and bound["useGPU"].checked is True
    assert (bound["textureRadius"].minimum, bound["textureRadius"].maximum) == (1, 3)   # from WithinRange
    assert (bound["warningSensitivity"].minimum, bound["warningSensitivity"].maximum) == (0.5, 0.99)
    from COMPASSLib.twin.model import CompassTwin

    # the twin's own default, shown (the module cannot import the twin before its packages are installed)
    assert bound["warningSensitivity"].value == p.warningSensitivity == CompassTwin().target_sensitivity
    cohort = tmp_path / "cohort.json"
    bound["cohortPath"].currentPath = str(cohort)
    bound["cohortPath"].currentPathChanged.emit(str(cohort))
    assert p.cohortPath == cohort and p.parameterNode.GetParameter("cohortPath") == str(cohort)
    bound["textureRadius"].value = 2
    bound["textureRadius"].valueChanged.emit(2)
    assert p.textureRadius == 2
    bound["warningSensitivity"].value = 0.9
    bound["warningSensitivity"].valueChanged.emit(0.9)
    assert p.warningSensitivity == 0.9
    p.textureOrgan = "Esophagus"
    assert bound["textureOrgan"].text == "Esophagus"
    assert w.ui.gpuStatusLabel.text and "GPU" in w.ui.gpuStatusLabel.text


BUTTON_WORK = {   # button -> the logic call it makes
    "generateSampleButton": "generateSampleCohort", "refreshPatientsButton": "patientIds",
    "loadPatientButton": "loadPatient", "runTwinButton": "runTwin", "showRiskButton": "showRisk",
    "computeTextureButton": "addTextureMaps", "saveSceneButton": "saveScene",
    "sceneCohortButton": "cohortFromScene", "whatIfOrgansButton": "modelOrgans",
    "projectWhatIfButton": "projectWhatIf",
}


def test_every_button_checks_the_dependencies_first_and_asks_once(slicer_framework, tmp_path, monkeypatch):
    fw = slicer_framework(testing=False)
    m = fw.load_module(copy_module(tmp_path, [ABSENT]))
    pip = PipRecorder()
    monkeypatch.setattr(fw.slicer.util, "executePythonModule", pip)
    asked = []
    monkeypatch.setattr(fw.slicer.util, "confirmOkCancelDisplay", lambda text, *a, **k: asked.append(text) or False)
    w = fw.widget(m)
    worked = []
    for work in set(BUTTON_WORK.values()) | {"device"}:
        monkeypatch.setattr(w.logic, work, lambda *a, _w=work, **k: worked.append(_w))
    w._patientNodes = object()    # the texture button needs a loaded patient
    for button in BUTTON_WORK:
        asked.clear()
        getattr(w.ui, button).click()
        assert len(asked) == 1, f"{button}: asked {len(asked)} times"
        assert "compass-absent-package" in asked[0], button
        assert worked == [], f"{button} ran {worked} without the packages"
    assert pip.calls == []
    assert "not installed" in w.ui.statusLabel.text


@pytest.fixture(scope="module")
def fresh_slicer_run(tmp_path_factory):
    """A fresh interpreter standing for a fresh Slicer: the packages Slicer does not bundle cannot be
    imported (NOT_BUNDLED); the module is loaded, the application starts (Sample Data registration), the
    widget is set up and the dependencies are checked. Then numba is let in and _glcm_cpu imported."""
    work = tmp_path_factory.mktemp("fresh-slicer")
    code = f"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, {str(TESTING)!r})
os.environ.pop("NUMBA_CACHE_DIR", None)
import helpers_slicer_framework as h
recorder = h.ImportRecorder().install()
fw = h.SlicerFramework(Path({str(work)!r}), testing=False)
m = fw.load_module()
fw.load_sample_data()
fw.app.emit_startup_completed()
w = fw.widget(m)
check = getattr(m.COMPASSLogic, "missingDependencies", None) or getattr(m.COMPASSLogic, "missingRequirements")
check()
out = {{"attempts": recorder.attempts, "label": w.ui.gpuStatusLabel.text, "cache": fw.app.cachePath,
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR")}}
sys.meta_path.remove(recorder)
import COMPASSLib.features._glcm_cpu as g
out["numba_cache_path"] = str(g._distinct_loop._cache._cache_path) if g.numba is not None else None
print("RESULT" + json.dumps(out))
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": sysconfig.get_paths()["purelib"], "HOME": str(work),
           "OMP_NUM_THREADS": "1", "COMPASS_MODULE_DIR": str(MODULE_FILE.parent)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_nothing_slicer_lacks_is_imported_before_consent(fresh_slicer_run):
    """Loading the module, the Sample Data registration, the widget's setup (GPU status) and the
    dependency check import none of torch, pandas, scikit-image, ... (a fresh Slicer has none of them,
    and importing torch before the user agreed is what the one question is for)."""
    assert set(NOT_BUNDLED) >= {"torch", "pandas", "skimage", "yaml", "radiomics"}
    assert fresh_slicer_run["attempts"] == []
    assert "GPU" in fresh_slicer_run["label"]


def test_numba_caches_in_a_per_user_folder(fresh_slicer_run):
    """NUMBA_CACHE_DIR is set before numba is imported, under slicer.app's cache folder, and numba's
    cached dispatchers of _glcm_cpu write there (not beside _glcm_cpu.py, which may be read-only)."""
    cache = Path(fresh_slicer_run["cache"])
    assert fresh_slicer_run["numba_cache_dir"] and Path(fresh_slicer_run["numba_cache_dir"]).is_relative_to(cache)
    if fresh_slicer_run["numba_cache_path"] is not None:
        assert Path(fresh_slicer_run["numba_cache_path"]).is_relative_to(fresh_slicer_run["numba_cache_dir"])


def _sample_buttons(SampleData, fw):
    """The Sample Data module's category frames and buttons, built by its own widget code."""
    owner = qt_module.QWidget()
    layout = qt_module.QVBoxLayout(owner)
    SampleData.SampleDataWidget.setCategoriesFromSampleDataSources(layout, fw.slicer.modules.sampleDataSources,
                                                                   SampleData.SampleDataLogic())
    frames = {frame.property("sampleDataCategory"): frame for frame in owner.children()}
    return frames, {b.name: b for frame in frames.values() for b in frame.children()}


def test_sample_data_lists_the_cohort_and_runs_its_loader(slicer_framework, monkeypatch):
    fw = slicer_framework()
    m = fw.load_module()
    SampleData = fw.load_sample_data()
    fw.app.emit_startup_completed()            # COMPASS registers on the application's startupCompleted()
    sources = SampleData.SampleDataLogic.sampleDataSourcesByCategory("COMPASS")
    assert len(sources) == 1, "the COMPASS category has no sample (registration failed)"
    source = sources[0]
    assert isinstance(source, SampleData.SampleDataSource) and source.sampleName
    assert Path(source.thumbnailFileName).is_file() and callable(source.customDownloader)
    frames, buttons = _sample_buttons(SampleData, fw)
    assert frames["COMPASS"].title == "COMPASS"
    button = buttons[f"{source.sampleName}PushButton"]
    assert button.text == source.sampleName and button in frames["COMPASS"].children()

    monkeypatch.setattr(m, "SAMPLE_COHORT", {"patients": 1, "fractions": 2, "seed": 0, "size": "small"})
    loaded = []
    loader = source.customDownloader
    source.customDownloader = lambda s: loaded.append(loader(s))
    button.click()                              # Sample Data calls source.customDownloader(source)
    assert len(loaded) == 1 and len(loaded[0]) == 1, loaded
    ct = loaded[0][0]
    assert ct is not None and ct.IsA("vtkMRMLScalarVolumeNode") and fw.scene.GetNodeByID(ct.GetID()) is ct
    assert ct.GetImageData() is not None and ct.GetImageData().GetNumberOfPoints() > 0
    assert (Path(fw.app.temporaryPath) / "COMPASS-sample" / "cohort.json").is_file()
