"""COMPASS: per-organ digital twin of fractionated radiotherapy for early toxicity prediction (3D Slicer module).

The module is thin: the widget binds the UI to a typed parameter node and calls one logic method per
button; the logic has no Qt and hands all scene work to COMPASSLib.mrml, all computation to COMPASSLib,
so it also runs without the widget (batch mode, the self test).

Python packages, the Slicer way, on first use and only after the user agrees (one question for all of
them, COMPASSLogic.ensureDependencies, asked before every button, the Sample Data loader and the self
test; nothing is imported or installed before): pyradiomics comes from the SlicerRadiomics extension,
PyTorch from the PyTorch extension (PyTorchUtils picks the CUDA or CPU build), the rest
(Resources/requirements.txt) through slicer.packaging.pip_ensure with Resources/constraints.txt, which
pins the packages Slicer bundles at Slicer's versions. In testing mode nothing is installed and the self
test is skipped, naming what is missing.
"""
import importlib.util
import logging
import os
import sys
import tempfile
import unittest
from pathlib import Path
from typing import Annotated, NamedTuple, Optional

# Developer mode (the source folder added to Slicer's module paths, nothing built): COMPASSLib sits in
# the folder above this file. In an installed extension CMake puts it beside this file instead.
if importlib.util.find_spec("COMPASSLib") is None:
    sys.path.append(str(Path(__file__).resolve().parents[1]))

import ctk
import qt
import slicer
import slicer.packaging
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from COMPASSLib import mrml
from COMPASSLib.errors import CompassError
from COMPASSLib.progress import Cancelled, report, scaled

RESOURCES = Path(__file__).resolve().parent / "Resources"
REQUIREMENTS = RESOURCES / "requirements.txt"   # installed with pip (slicer.packaging.pip_ensure)
CONSTRAINTS = RESOURCES / "constraints.txt"     # the packages Slicer bundles, at Slicer's versions
# Packages that Slicer extensions provide (CMakeLists.txt EXTENSION_DEPENDS), never pip: requirement -> extension.
EXTENSION_REQUIREMENTS = {"torch>=2.2": "PyTorch", "pyradiomics>=3": "SlicerRadiomics"}

SAMPLE_NAME = "COMPASSSyntheticThorax"
SAMPLE_COHORT = {"patients": 3, "fractions": 5, "seed": 0, "size": "small"}


def _given(path) -> bool:
    """An empty path field of the parameter node reads back as Path('.')."""
    return path is not None and str(path) not in ("", ".")


class Missing(NamedTuple):
    """A requirement this Slicer does not satisfy, and the extension that provides it (None: pip)."""
    requirement: str
    extension: Optional[str] = None

    def describe(self) -> str:
        if self.extension is None:
            return self.requirement
        return _("{requirement} (from the {extension} extension)").format(requirement=self.requirement,
                                                                          extension=self.extension)


class MissingPackages(CompassError):
    """Python packages COMPASS needs that cannot be installed from here (or were not installed)."""

    def __init__(self, message: str, missing: list):
        super().__init__(message)
        self.missing = list(missing)


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
            "After the COMPASS method (arXiv 2602.18496). Uses pyradiomics (SlicerRadiomics), PyTorch "
            "(PyTorch extension), SimpleITK, pydicom and 3D Slicer's Sequences, Segmentations and Plots modules.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Offer the synthetic cohort in the Sample Data module. Nothing is downloaded (no URIs, no files):
    the loader checks the dependencies, writes the cohort into Slicer's temporary folder and loads its
    first patient."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="COMPASS", sampleName=SAMPLE_NAME, uris=[], fileNames=[], nodeNames=[],
        thumbnailFileName=str(RESOURCES / "Icons" / "COMPASS.png"), customDownloader=loadSampleData)


def loadSampleData(source=None) -> list:
    """The Sample Data loader: the first patient of a freshly generated synthetic cohort; returns its
    first CT (the fraction's own node where load_patient keeps one, else the CT the views show: the
    browser's proxy node of the CT sequence)."""
    logic = COMPASSLogic()
    with slicer.util.tryWithErrorDisplay(_("COMPASS: the sample cohort could not be loaded.")):
        if not logic.ensureDependencies(askUser=slicer.util.confirmOkCancelDisplay):
            return []
        cohort_json = logic.generateSampleCohort(Path(slicer.app.temporaryPath) / "COMPASS-sample")
        nodes = logic.loadPatient(cohort_json, logic.patientIds(cohort_json)[0])
    kept = nodes.volumes.get(("ct", min(nodes.fractions)))    # the first fraction's own CT node, where kept
    return [slicer.mrmlScene.GetNodeByID(kept) if kept else nodes.proxy(slicer.mrmlScene, "ct")]


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
    # Training only: the warning threshold is the highest that catches this share of the training
    # trajectories' toxicities (CompassTwin target_sensitivity; a trained model keeps its own threshold).
    warningSensitivity: Annotated[float, WithinRange(0.5, 0.99)] = 0.85
    textureOrgan: str = "Heart"
    textureFeatures: str = "glcm:Contrast"        # comma-separated, as `compass texture --features`
    textureRadius: Annotated[int, WithinRange(1, 3)] = 1
    textureFraction: Annotated[int, WithinRange(1, 60)] = 1
    whatIfAfter: Annotated[int, WithinRange(1, 60)] = 2  # fractions delivered; the rest is projected
    whatIfScales: str = ""                        # ORGAN=F,... as `compass whatif --scale` (the sliders set it)


#
# COMPASSWidget
#
class COMPASSWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin UI: each button is one logic call after the one dependency check; errors become message
    boxes; long work has progress and a Cancel button."""

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
        self.ui.sceneCohortButton.connect("clicked(bool)", self.onSceneCohort)
        self.ui.runTwinButton.connect("clicked(bool)", self.onRunTwin)
        self.ui.showRiskButton.connect("clicked(bool)", self.onShowRisk)
        self.ui.computeTextureButton.connect("clicked(bool)", self.onComputeTexture)
        self.ui.saveSceneButton.connect("clicked(bool)", self.onSaveScene)
        self.ui.whatIfOrgansButton.connect("clicked(bool)", self.onWhatIfOrgans)
        self.ui.projectWhatIfButton.connect("clicked(bool)", self.onProjectWhatIf)
        self._whatIfSliders = {}                # organ -> ctkSliderWidget, made from the trained model
        self._whatIfSlidersLayout = qt.QFormLayout(self.ui.whatIfSlidersWidget)
        self._whatIfTimer = qt.QTimer()      # a slider's last move projects once, not on every step
        self._whatIfTimer.setSingleShot(True)
        self._whatIfTimer.setInterval(700)
        self._whatIfTimer.connect("timeout()", self.onProjectWhatIf)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.setVisible(False)
        self.ui.gpuStatusLabel.text = self.logic.gpuStatus()   # torch is not imported here
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

    # --- long work: dependencies, progress, cancel, errors ---------------------------------------
    def _progress(self, value: float, message: str) -> bool:
        self.ui.progressBar.value = int(round(100 * value))
        self.ui.statusLabel.text = message
        slicer.app.processEvents()   # keeps Cancel clickable during the work
        return not self._cancelRequested

    def _dependenciesReady(self, what: str) -> bool:
        """The one dependency check before any work: nothing missing, or installed after one question."""
        with slicer.util.tryWithErrorDisplay(_("COMPASS: the Python packages it needs are not available.")):
            if self.logic.ensureDependencies(askUser=slicer.util.confirmOkCancelDisplay):
                return True
        self.ui.statusLabel.text = _("{what}: needs Python packages that are not installed").format(what=what)
        return False

    def _run(self, what: str, work):
        """Run one logic call with progress and Cancel, after the dependency check; a failure shows one
        message box whose text is the CompassError's line (what is wrong, patient, fraction, file)."""
        if not self._dependenciesReady(what):
            return None
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
        device = self.logic.device(self._parameterNode.useGPU)   # imports torch: after the dependency check
        self.ui.gpuStatusLabel.text = _("computing on {device}").format(device=device)
        return device

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
        if ids is not None:
            self.ui.patientComboBox.clear()
            self.ui.patientComboBox.addItems(ids)

    def onLoadPatient(self) -> None:
        p = self._parameterNode
        risk = p.riskPath if _given(p.riskPath) else None
        self._patientNodes = self._run(_("loading the patient"), lambda: self.logic.loadPatient(
            p.cohortPath, self._patient(), risk=risk, progress=self._progress)) or self._patientNodes

    def onSceneCohort(self) -> None:
        p = self._parameterNode
        cohort = self._run(_("reading the DICOM series in the scene"),
                           lambda: self.logic.cohortFromScene(p.outputPath))
        if cohort is not None:
            p.cohortPath = Path(cohort)
            self.onRefreshPatients()

    def onRunTwin(self) -> None:
        p = self._parameterNode
        model = p.modelPath if _given(p.modelPath) else None
        risk = self._run(_("running the twin"), lambda: self.logic.runTwin(
            p.cohortPath, p.outputPath, model, self._device(), progress=self._progress,
            warningSensitivity=p.warningSensitivity))
        if risk is not None:
            p.riskPath = Path(risk)
            if not self._patient():   # run before any patient was picked: show the cohort's first one
                self.onRefreshPatients()
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

    def onWhatIfOrgans(self) -> None:
        """One slider (dose scale 0-1.5 for the remaining fractions) per organ the trained model knows."""
        p = self._parameterNode
        organs = self._run(_("reading the model"), lambda: self.logic.modelOrgans(p.modelPath))
        if organs is None:
            return
        layout = self._whatIfSlidersLayout
        for slider in self._whatIfSliders.values():
            layout.removeRow(slider)
        current = self.logic.parseScales(p.whatIfScales)
        self._whatIfSliders = {}
        for organ in organs:
            slider = ctk.ctkSliderWidget()
            slider.minimum, slider.maximum, slider.singleStep, slider.decimals = 0.0, 1.5, 0.05, 2
            slider.value = current.get(organ, 1.0)
            slider.toolTip = _("Scale of {organ}'s dose in the remaining fractions").format(organ=organ)
            slider.connect("valueChanged(double)", lambda value, organ=organ: self.onWhatIfSlider(organ, value))
            layout.addRow(organ, slider)
            self._whatIfSliders[organ] = slider

    def onWhatIfSlider(self, organ: str, value: float) -> None:
        scales = {o: float(s.value) for o, s in self._whatIfSliders.items()}
        scales[organ] = float(value)
        self._parameterNode.whatIfScales = self.logic.formatScales(scales)
        if self._patientNodes is not None:
            self._whatIfTimer.start()

    def onProjectWhatIf(self) -> None:
        p = self._parameterNode
        self._run(_("projecting the remaining fractions"), lambda: self.logic.projectWhatIf(
            p.modelPath, p.cohortPath, self._patient(), p.whatIfAfter, p.whatIfScales, progress=self._progress))

    def onSaveScene(self) -> None:
        p = self._parameterNode
        saved = self._run(_("saving the scene"), lambda: self.logic.saveScene(
            self.logic.scenePath(p.outputPath, self._patient())))
        if saved is not None:
            self.ui.statusLabel.text = _("saved {path}").format(path=saved)


#
# COMPASSLogic
#
class COMPASSLogic(ScriptedLoadableModuleLogic):
    """What the module does, without Qt: every method delegates to COMPASSLib (mrml for the scene)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        # numba (texture maps) writes its compile cache beside COMPASSLib/features/_glcm_cpu.py unless
        # told otherwise; an installed extension's folder may be read-only. Set before numba is imported.
        os.environ.setdefault("NUMBA_CACHE_DIR", str(self.numbaCacheFolder()))

    def getParameterNode(self):
        return COMPASSParameterNode(super().getParameterNode())

    @staticmethod
    def numbaCacheFolder() -> Path:
        """A per-user folder for numba's compile cache: under Slicer's cache folder."""
        return Path(slicer.app.cachePath) / "COMPASS" / "numba"

    # dependencies ------------------------------------------------------------------------------
    @staticmethod
    def requirements() -> list:
        """The pip-installed requirements (Resources/requirements.txt) as strings."""
        return [str(r) for r in slicer.packaging.load_requirements(REQUIREMENTS)]

    @classmethod
    def missingDependencies(cls) -> list:
        """Requirements this Slicer does not satisfy (Missing), from package metadata: nothing is imported."""
        missing = [Missing(r) for r in cls.requirements() if not slicer.packaging.pip_check(r)]
        missing += [Missing(r, extension) for r, extension in EXTENSION_REQUIREMENTS.items()
                    if not slicer.packaging.pip_check(r)]
        return missing

    @staticmethod
    def consentText(missing: list) -> str:
        return _("COMPASS needs Python packages that are not installed yet. They will be downloaded and "
                 "installed now (this may take several minutes); the packages 3D Slicer bundles stay at "
                 "their versions:\n\n{packages}\n\nContinue?").format(
            packages="\n".join(f"- {m.describe()}" for m in missing))

    def ensureDependencies(self, askUser=None) -> bool:
        """True when every package COMPASS needs is there, else one question (`askUser(text)`, by default
        Slicer's OK/Cancel box) and, after OK, the install: torch through the PyTorch extension, the rest
        through pip_ensure with the constraints file. False when the user declines, and always in
        testing mode, which installs nothing. Raises MissingPackages for what only an extension provides
        (pyradiomics: SlicerRadiomics; torch without the PyTorch extension) and for a failed install."""
        missing = self.missingDependencies()
        if not missing:
            return True
        if slicer.app.testingEnabled():
            logging.info("COMPASS: testing mode installs nothing; missing: "
                         + ", ".join(m.requirement for m in missing))
            return False
        torchInstaller = importlib.util.find_spec("PyTorchUtils") is not None
        unavailable = [m for m in missing if m.extension and not (m.extension == "PyTorch" and torchInstaller)]
        if unavailable:
            raise MissingPackages(
                _("COMPASS needs {packages}: install the {extensions} extension with the Extensions Manager "
                  "and restart Slicer").format(packages=", ".join(m.requirement for m in unavailable),
                                               extensions=", ".join(sorted({m.extension for m in unavailable}))),
                unavailable)
        if not (askUser or slicer.util.confirmOkCancelDisplay)(self.consentText(missing)):
            logging.info("COMPASS: installing Python packages declined")
            return False
        for m in missing:
            if m.extension == "PyTorch":
                self.installTorch(m.requirement)
        pipMissing = [m.requirement for m in missing if m.extension is None]
        if pipMissing:
            slicer.packaging.pip_ensure(pipMissing, constraints=CONSTRAINTS, prompt_install=False,
                                        requester="COMPASS")
        still = self.missingDependencies()
        if still:
            raise MissingPackages(_("COMPASS: still missing after the installation: {packages}").format(
                packages=", ".join(m.requirement for m in still)), still)
        return True

    @staticmethod
    def installTorch(requirement: str) -> None:
        """PyTorch through the PyTorch extension, which picks the CUDA or CPU build for this machine
        (asked already: no second question)."""
        import PyTorchUtils
        from packaging.requirements import Requirement

        specifier = str(Requirement(requirement).specifier) or None
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                         torchVersionRequirement=specifier) is None:
            raise MissingPackages(_("COMPASS: PyTorch was not installed"), [Missing(requirement, "PyTorch")])

    # work --------------------------------------------------------------------------------------
    @staticmethod
    def gpuStatus() -> str:
        """What can be said about the GPU without importing torch (it is imported when a run starts)."""
        if not slicer.packaging.pip_check("torch"):
            return _("GPU: unknown until the Python packages are installed")
        return _("GPU: checked when the twin or texture maps run")

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
    def cohortFromScene(outputPath=None) -> Path:
        """The patients whose series were loaded through Slicer's DICOM module (SlicerRT for RTDOSE and
        RTSTRUCT), found by study in the subject hierarchy, as a cohort manifest (mrml.scene_cohort; files
        from the DICOM database): OUTPUT/scene-cohort/cohort.json, or a temporary folder."""
        folder = (Path(outputPath) if _given(outputPath) else Path(tempfile.mkdtemp(prefix="COMPASS-scene-")))
        return mrml.scene_cohort(None, folder / "scene-cohort", slicer.mrmlScene)

    @staticmethod
    def runTwin(cohortPath, outputPath, modelPath=None, device="cpu", progress=None, warningSensitivity=None) -> Path:
        """Train and evaluate the twin on the cohort (the main job of `compass run`), or score every fraction
        with a trained model (pipeline.score), in a background process (COMPASSLib.background: PythonSlicer
        inside Slicer), so the application stays responsive: `progress` hears the job's own progress, and
        answering False stops the job, leaving outputPath as it was. Returns the risk.csv written there.
        `warningSensitivity` (training only; None: the twin's default) is `compass run --target-sensitivity`."""
        from COMPASSLib.background import Job

        outputPath = Path(outputPath) if _given(outputPath) else Path(tempfile.mkdtemp(prefix="COMPASS-run-"))
        if modelPath:
            job = Job("score", cohortPath, outputPath, model=modelPath, device=device)
        else:
            twin = {"device": device}
            if warningSensitivity is not None:
                twin.update(threshold_rule="sensitivity", target_sensitivity=float(warningSensitivity))
            job = Job("run", cohortPath, outputPath, settings={"twin": twin})
        result = job.wait(progress)
        report(progress, 1.0, f"wrote {result['risk_csv']}")
        return Path(result["risk_csv"])

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
    def modelOrgans(modelPath) -> list:
        from COMPASSLib.twin.model import CompassTwin

        return CompassTwin.load(modelPath).organs_

    @staticmethod
    def parseScales(text) -> dict:
        """"Heart=0.5,Esophagus=0.8" -> {organ: factor} (twin.whatif.parse_scale's checks); "" -> {}."""
        from COMPASSLib.twin.whatif import parse_scale

        return dict(parse_scale(text).scale) if str(text or "").strip() else {}

    @staticmethod
    def formatScales(scales: dict) -> str:
        """The organs whose factor is not 1, as `compass whatif --scale` takes them."""
        return ",".join(f"{o}={f:g}" for o, f in scales.items() if abs(f - 1.0) > 1e-9)

    @classmethod
    def projectWhatIf(cls, modelPath, cohortPath, patientId, after, scales="", progress=None):
        """The patient's remaining fractions after fraction `after` projected by the twin (twin.whatif):
        as planned and, where `scales` sets any, with the scaled dose; shown as table, chart and, per
        scaled organ (or every organ when none is), the projected cumulative BED volume
        (mrml.add_whatif). Returns (projection DataFrame, WhatIfNodes)."""
        from COMPASSLib.cohort import Cohort
        from COMPASSLib.twin import whatif
        from COMPASSLib.twin.model import CompassTwin

        scenarios = [whatif.Scenario(whatif.AS_PLANNED)]
        if cls.parseScales(scales):
            scenarios.append(whatif.parse_scale(scales))
        cohort = Cohort.load(cohortPath).subset([patientId])
        twin = CompassTwin.load(modelPath)
        # the projected BED volume of each scaled organ (of every organ when none is), from the same course
        organs = [o for o, _ in scenarios[-1].scale] or list(twin.organs_)
        projection, images = whatif.project(twin, cohort, int(after), scenarios, bed_of=organs,
                                            progress=scaled(progress, 0.0, 0.9))
        images = {o: images[(scenarios[-1].name, patientId, o)] for o in organs}
        nodes = mrml.add_whatif(projection, patientId, slicer.mrmlScene, bed_images=images)
        mrml.show_plot(slicer.mrmlScene.GetNodeByID(nodes.chart))
        report(progress, 1.0, f"projected {patientId} after fraction {after}")
        return projection, nodes

    @staticmethod
    def scenePath(outputPath, patientId) -> Path:
        """OUTPUT/scenes/<patient>.mrb; an empty Output folder is an error (a relative path would save into
        the application's working folder, wherever that is)."""
        from COMPASSLib.atomic import safe_filename
        from COMPASSLib.errors import InputError

        if not _given(outputPath) or not Path(outputPath).is_absolute():
            raise InputError("choose an Output folder (an absolute path) to save the scene in")
        return Path(outputPath) / "scenes" / f"{safe_filename(patientId or 'COMPASS')}.mrb"

    @staticmethod
    def saveScene(path) -> Path:
        return mrml.save_scene(path, slicer.mrmlScene)


#
# COMPASSTest
#
class COMPASSTest(ScriptedLoadableModuleTest):
    """Self test (Slicer's Reload and Test, and ctest): sample cohort -> patient in the scene -> .mrb.
    It needs COMPASS's Python packages; where they are missing and testing mode installs nothing (the
    extension build servers), it is skipped, naming them."""

    def setUp(self):
        slicer.mrmlScene.Clear()
        self.logic = COMPASSLogic()
        if not self.logic.ensureDependencies(askUser=slicer.util.confirmOkCancelDisplay):
            self.skipTest("COMPASS self test skipped, Python packages not installed: "
                          + ", ".join(m.requirement for m in self.logic.missingDependencies()))

    def runTest(self):
        try:
            self.setUp()
        except unittest.SkipTest as skipped:
            self.delayDisplay(str(skipped))
            return
        self.test_COMPASS_sample_patient()

    def test_COMPASS_sample_patient(self):
        import pandas as pd

        from COMPASSLib.cohort import Cohort

        logic = self.logic
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
