"""COMPASS: per-organ digital twin of fractionated radiotherapy for early toxicity prediction (3D Slicer module).

The module is thin: the widget binds the UI to a typed parameter node and calls one logic method per
button; the logic has no Qt and hands all scene work to COMPASSLib.mrml, all computation to COMPASSLib,
so it also runs headless (batch mode, the slicer-core wheel in tests).
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

# Developer mode (the source folder added to Slicer's module paths, nothing built): COMPASSLib sits in
# the folder above this file. In an installed extension CMake puts it beside this file instead.
try:
    import COMPASSLib  # noqa: F401
except ImportError:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import slicer

try:
    from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
    from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                               ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
    from slicer.util import VTKObservationMixin
except ImportError:
    # The slicer-core wheel (headless tests) has MRML but not the application framework: keep the
    # logic and the parameter declarations importable; the module and widget need the application.
    import unittest

    def parameterNodeWrapper(cls):
        return cls

    def WithinRange(low, high):  # noqa: N802 - Slicer's name
        return (low, high)

    class ScriptedLoadableModuleLogic:
        def __init__(self, *args, **kwargs):
            pass

    class ScriptedLoadableModule(ScriptedLoadableModuleLogic):
        pass

    class ScriptedLoadableModuleWidget(ScriptedLoadableModuleLogic):
        pass

    class VTKObservationMixin(ScriptedLoadableModuleLogic):
        pass

    class ScriptedLoadableModuleTest(unittest.TestCase):
        pass

try:
    from slicer.i18n import tr as _
except ImportError:   # Slicer before 5.4 and slicer-core: untranslated
    def _(text):
        return text

from COMPASSLib import mrml  # noqa: E402
from COMPASSLib.errors import CompassError  # noqa: E402
from COMPASSLib.progress import Cancelled, report  # noqa: E402

SAMPLE_COHORT = {"patients": 3, "fractions": 5, "seed": 0, "size": "small"}


def _given(path) -> bool:
    """An empty path field of the parameter node reads back as Path('.')."""
    return path is not None and str(path) not in ("", ".")


#
# COMPASS
#
class COMPASS(ScriptedLoadableModule):
    """Module metadata, help and acknowledgement; registers the synthetic sample cohort."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("COMPASS")
        self.parent.categories = ["Radiotherapy"]
        self.parent.dependencies = []
        self.parent.contributors = ["The COMPASS authors"]
        self.parent.helpText = _(
            "COMPASS builds a per-organ digital twin of fractionated radiotherapy from per-fraction "
            "CT, PET and delivered dose, and predicts normal-tissue toxicity (CTCAE grade >= 1) after "
            "each fraction, with an early warning. Load a patient of a cohort (or the synthetic sample "
            "cohort), browse CT/PET/dose and cumulative BED/EQD2 over fractions, run the twin or show a "
            "risk.csv as a table and chart, and overlay voxelwise dose-texture maps. "
            "Research software: not for clinical use.")
        self.parent.acknowledgementText = _(
            "After the COMPASS method (arXiv 2602.18496). Uses pyradiomics, PyTorch, SimpleITK, pydicom "
            "and 3D Slicer's Sequences, Segmentations and Plots modules.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Offer the synthetic cohort in the Sample Data module. It is generated locally (no download):
    the loader writes it into Slicer's temporary folder and loads its first patient."""
    try:
        import SampleData
    except ImportError:
        return
    icons = os.path.join(os.path.dirname(__file__), "Resources", "Icons")

    def load(source=None):
        logic = COMPASSLogic()
        if not logic.ensureDependencies(askUser=slicer.util.confirmOkCancelDisplay):
            return []
        cohort_json = logic.generateSampleCohort(Path(slicer.app.temporaryPath) / "COMPASS-sample")
        nodes = logic.loadPatient(cohort_json, logic.patientIds(cohort_json)[0])
        return [slicer.mrmlScene.GetNodeByID(nodes.volumes[("ct", min(nodes.fractions))])]

    try:
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category="COMPASS", sampleName="COMPASSSyntheticThorax", uris=None, fileNames=None,
            nodeNames="COMPASS synthetic thorax", thumbnailFileName=os.path.join(icons, "COMPASS.png"),
            loadFileType=None, customDownloader=load)
    except TypeError:   # older SampleData signature without customDownloader: skip, the button remains
        logging.info("COMPASS: SampleData too old for generated sample data; use 'Generate sample cohort'")


#
# Parameter node: one field per widget with a SlicerParameterName in Resources/UI/COMPASS.ui
#
@parameterNodeWrapper
class COMPASSParameterNode:
    cohortPath: Path                              # cohort.json (or its folder)
    modelPath: Path                               # trained twin folder (compass run's model/); empty: train
    outputPath: Path                              # where the twin run and saved scenes go
    riskPath: Path                                # an existing risk.csv to show
    useGPU: bool = True                           # CUDA when present; off forces the CPU
    textureOrgan: str = "Heart"
    textureFeatures: str = "glcm:Contrast"        # comma-separated, as `compass texture --features`
    textureRadius: Annotated[int, WithinRange(1, 3)] = 1
    textureFraction: Annotated[int, WithinRange(1, 60)] = 1


#
# COMPASSWidget
#
class COMPASSWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin UI: each button is one logic call; errors become message boxes; long work has progress
    and a Cancel button."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._patientNodes = None
        self._cancelRequested = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/COMPASS.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = COMPASSLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.generateSampleButton.connect("clicked(bool)", self.onGenerateSample)
        self.ui.refreshPatientsButton.connect("clicked(bool)", self.onRefreshPatients)
        self.ui.loadPatientButton.connect("clicked(bool)", self.onLoadPatient)
        self.ui.runTwinButton.connect("clicked(bool)", self.onRunTwin)
        self.ui.showRiskButton.connect("clicked(bool)", self.onShowRisk)
        self.ui.computeTextureButton.connect("clicked(bool)", self.onComputeTexture)
        self.ui.saveSceneButton.connect("clicked(bool)", self.onSaveScene)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.setVisible(False)
        self.ui.gpuStatusLabel.text = _("GPU available") if self.logic.gpuAvailable() else _("no GPU: CPU only")
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._patientNodes = None

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # --- long work: progress, cancel, errors -----------------------------------------------------
    def _progress(self, value: float, message: str) -> bool:
        self.ui.progressBar.value = int(round(100 * value))
        self.ui.statusLabel.text = message
        slicer.app.processEvents()   # keeps Cancel clickable during the work
        return not self._cancelRequested

    def _run(self, what: str, work):
        """Run one logic call with progress and Cancel; a failure shows one message box whose text is
        the CompassError's line (what is wrong, patient, fraction, file), details in the box."""
        self._cancelRequested = False
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.value = 0
        self.ui.cancelButton.enabled = True
        try:
            with slicer.util.tryWithErrorDisplay(_("COMPASS: {what} failed.").format(what=what), waitCursor=True):
                try:
                    return work()
                except Cancelled:
                    self.ui.statusLabel.text = _("{what}: cancelled").format(what=what)
        finally:
            self.ui.cancelButton.enabled = False
            self.ui.progressBar.setVisible(False)
        return None

    def onCancel(self) -> None:
        self._cancelRequested = True

    def _device(self) -> str:
        return self.logic.device(self._parameterNode.useGPU)

    def _patient(self) -> str:
        return self.ui.patientComboBox.currentText

    # --- buttons: one logic call each ------------------------------------------------------------
    def onGenerateSample(self) -> None:
        folder = Path(slicer.app.temporaryPath) / "COMPASS-sample"
        cohort = self._run(_("generating the sample cohort"),
                           lambda: self.logic.generateSampleCohort(folder, progress=self._progress))
        if cohort is not None:
            self._parameterNode.cohortPath = Path(cohort)
            self.onRefreshPatients()

    def onRefreshPatients(self) -> None:
        ids = self._run(_("reading the cohort"), lambda: self.logic.patientIds(self._parameterNode.cohortPath))
        self.ui.patientComboBox.clear()
        self.ui.patientComboBox.addItems(ids or [])

    def onLoadPatient(self) -> None:
        if not self.logic.ensureDependencies(askUser=slicer.util.confirmOkCancelDisplay):
            return
        p = self._parameterNode
        risk = p.riskPath if _given(p.riskPath) else None
        self._patientNodes = self._run(_("loading the patient"), lambda: self.logic.loadPatient(
            p.cohortPath, self._patient(), risk=risk, progress=self._progress)) or self._patientNodes

    def onRunTwin(self) -> None:
        if not self.logic.ensureDependencies(askUser=slicer.util.confirmOkCancelDisplay):
            return
        p = self._parameterNode
        model = p.modelPath if _given(p.modelPath) else None
        risk = self._run(_("running the twin"), lambda: self.logic.runTwin(
            p.cohortPath, p.outputPath, model, self._device(), progress=self._progress))
        if risk is not None:
            p.riskPath = Path(risk)
            self.onShowRisk()

    def onShowRisk(self) -> None:
        p = self._parameterNode
        self._run(_("showing the risk"), lambda: self.logic.showRisk(p.riskPath, self._patient(), p.cohortPath))

    def onComputeTexture(self) -> None:
        p = self._parameterNode
        if self._patientNodes is None:
            slicer.util.errorDisplay(_("Load a patient first."))
            return
        self._run(_("computing texture maps"), lambda: self.logic.addTextureMaps(
            self._patientNodes, p.textureOrgan, p.textureFraction, p.textureFeatures, p.textureRadius,
            self._device(), progress=self._progress))

    def onSaveScene(self) -> None:
        p = self._parameterNode
        target = Path(p.outputPath) / "scenes" / f"{self._patient() or 'COMPASS'}.mrb"
        saved = self._run(_("saving the scene"), lambda: self.logic.saveScene(target))
        if saved is not None:
            self.ui.statusLabel.text = _("saved {path}").format(path=saved)


#
# COMPASSLogic
#
class COMPASSLogic(ScriptedLoadableModuleLogic):
    """What the module does, without Qt: every method delegates to COMPASSLib (mrml for the scene)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return COMPASSParameterNode(super().getParameterNode())

    # dependencies ------------------------------------------------------------------------------
    @staticmethod
    def requirements() -> list:
        """Requirement lines of Resources/requirements.txt (torch is handled by ensureTorch)."""
        path = Path(__file__).resolve().parent / "Resources" / "requirements.txt"
        lines = [line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
        return [line for line in lines if line]

    @classmethod
    def missingRequirements(cls) -> list:
        """Requirements not satisfied by the installed packages (checked without importing them)."""
        import importlib.metadata

        from packaging.requirements import Requirement

        missing = []
        for line in cls.requirements():
            req = Requirement(line)
            try:
                if not req.specifier.contains(importlib.metadata.version(req.name), prereleases=True):
                    missing.append(line)
            except importlib.metadata.PackageNotFoundError:
                missing.append(line)
        return missing

    def ensureDependencies(self, askUser=None) -> bool:
        """Install what is missing, on first use and only after `askUser(text)` agrees; never at
        import time and never in testing mode (there a missing package is an error)."""
        missing = self.missingRequirements()
        if not missing:
            return True
        text = _("COMPASS needs these Python packages, which will be downloaded and installed now "
                 "(this may take several minutes):\n\n{packages}").format(packages="\n".join(missing))
        testing = hasattr(slicer, "app") and slicer.app.testingEnabled()
        if testing or askUser is None or not askUser(text):
            if testing:
                raise CompassError("missing Python packages in testing mode: " + ", ".join(missing))
            return False
        torch_lines = [m for m in missing if m.lower().startswith("torch")]
        others = [m for m in missing if m not in torch_lines]
        if torch_lines:
            self.installTorch(torch_lines[0])
        if others:
            slicer.util.pip_install(others)
        return not self.missingRequirements()

    @staticmethod
    def installTorch(requirement: str = "torch") -> None:
        """PyTorch through the PyTorch extension (it picks the CUDA or CPU build for this machine),
        else pip: CUDA build where an NVIDIA driver is present, CPU build otherwise."""
        try:
            import PyTorchUtils
        except ImportError:
            PyTorchUtils = None
        if PyTorchUtils is not None:
            torch_logic = PyTorchUtils.PyTorchUtilsLogic()
            if not torch_logic.torchInstalled():
                torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=requirement[5:] or None)
            return
        import shutil

        index = None if shutil.which("nvidia-smi") else "https://download.pytorch.org/whl/cpu"
        slicer.util.pip_install([requirement] + (["--index-url", index] if index else []))

    # work --------------------------------------------------------------------------------------
    @staticmethod
    def gpuAvailable() -> bool:
        from COMPASSLib.devices import cuda_available

        return cuda_available()

    @staticmethod
    def device(useGPU: bool) -> str:
        from COMPASSLib.devices import resolve_device

        return resolve_device("auto" if useGPU else "cpu")

    @staticmethod
    def generateSampleCohort(folder, progress=None, **overrides) -> Path:
        """The synthetic thorax cohort (DICOM, outcomes.csv, cohort.json), generated here, no download."""
        from COMPASSLib.synth import generate_cohort

        return Path(generate_cohort(folder, progress=progress, **{**SAMPLE_COHORT, **overrides}))

    @staticmethod
    def patientIds(cohortPath) -> list:
        from COMPASSLib.cohort import Cohort

        return Cohort.load(cohortPath).patient_ids

    @staticmethod
    def loadPatient(cohortPath, patientId, risk=None, progress=None):
        """Fraction series, BED/EQD2, and (with a risk.csv) the risk table and chart; see mrml.load_patient."""
        nodes = mrml.load_patient(cohortPath, patientId, slicer.mrmlScene, risk=risk, progress=progress)
        if nodes.risk_chart:
            mrml.show_plot(slicer.mrmlScene.GetNodeByID(nodes.risk_chart))
        return nodes

    @staticmethod
    def runTwin(cohortPath, outputPath, modelPath=None, device="cpu", progress=None) -> Path:
        """Train and evaluate the twin on the cohort (the main job of `compass run`), or score every fraction
        with a trained model (pipeline.score); returns the risk.csv written into outputPath."""
        from COMPASSLib import pipeline

        outputPath = Path(outputPath) if _given(outputPath) else Path(tempfile.mkdtemp(prefix="COMPASS-run-"))
        if modelPath:
            pipeline.score(modelPath, cohortPath, outputPath, device=device, progress=progress)
        else:
            pipeline.run(cohortPath, outputPath, {"twin": {"device": device}}, progress=progress)
        report(progress, 1.0, f"wrote {outputPath / 'risk.csv'}")
        return outputPath / "risk.csv"

    @staticmethod
    def showRisk(riskPath, patientId, cohortPath=None):
        """The risk table and chart of one patient (toxicity onsets from the cohort's outcomes)."""
        from COMPASSLib.cohort import Cohort

        onsets = Cohort.load(cohortPath).onsets(patientId) if _given(cohortPath) else {}
        table = mrml.add_risk_table(riskPath, patientId, slicer.mrmlScene)
        chart = mrml.add_risk_plot(riskPath, patientId, onsets, slicer.mrmlScene)
        mrml.show_plot(chart)
        return table, chart

    @staticmethod
    def addTextureMaps(patientNodes, organ, fraction, features, radius, device="cpu", progress=None):
        """Texture maps of the organ's cumulative BED with the bin width and other settings `compass run`
        uses (mrml.add_texture_maps), so the overlay equals the run's map files and tex_ columns."""
        features = [f.strip() for f in str(features).split(",") if f.strip()]
        return mrml.add_texture_maps(patientNodes, organ, int(fraction), features, int(radius),
                                     device=device, scene=slicer.mrmlScene, progress=progress)

    @staticmethod
    def saveScene(path) -> Path:
        return mrml.save_scene(path, slicer.mrmlScene)


#
# COMPASSTest
#
class COMPASSTest(ScriptedLoadableModuleTest):
    """Self test (Slicer's Reload and Test, and ctest): sample cohort -> patient in the scene -> .mrb."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_COMPASS_sample_patient()

    def test_COMPASS_sample_patient(self):
        import pandas as pd

        from COMPASSLib.cohort import Cohort

        logic = COMPASSLogic()
        with tempfile.TemporaryDirectory(prefix="COMPASS-selftest-") as folder:
            work = Path(folder)
            cohort = logic.generateSampleCohort(work / "cohort", patients=1, fractions=2)
            patient = logic.patientIds(cohort)[0]
            organs = Cohort.load(cohort).patient(patient).canonical_organs
            risk = pd.DataFrame([{"patient": patient, "organ": o, "fraction": k, "risk": 0.1 * k, "ci_low": 0.0,
                                  "ci_high": 0.5, "warning": 0} for o in organs for k in (1, 2)])
            nodes = logic.loadPatient(cohort, patient, risk=risk)
            self.assertEqual(nodes.fractions, [1, 2])
            self.assertIsNotNone(slicer.mrmlScene.GetNodeByID(nodes.browser))
            self.assertIsNotNone(slicer.mrmlScene.GetNodeByID(nodes.risk_chart))
            saved = logic.saveScene(work / "selftest.mrb")
            self.assertTrue(saved.is_file())
