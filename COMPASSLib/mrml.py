"""The MRML bridge: puts COMPASS images and results into a 3D Slicer scene.

Everything the Slicer module does with the scene lives here, so it runs the same in the full
application, in `Slicer --no-main-window` batch mode and under plain Python with the `slicer-core`
wheel (real MRML, no Qt, no `slicer.app`). `slicer` is imported lazily: importing COMPASSLib never
needs Slicer.

Geometry: COMPASSLib images are SimpleITK images in LPS (DICOM patient coordinates); Slicer's world is
RAS. The one conversion in the project is here: RAS = diag(-1, -1, 1) * LPS, applied to the
direction cosines and the origin; voxel order and spacing are unchanged.

Long functions take `progress` (COMPASSLib.progress: `progress(fraction_done, message)`, False cancels).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.progress import Cancelled, report, scaled  # noqa: F401 (Cancelled: for callers)

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
MODALITIES = ("ct", "pet", "dose")
# How a modality is named in node names.
_MODALITY_NAMES = {"ct": "CT", "pet": "PET", "dose": "Dose", "bed": "BED", "eqd2": "EQD2"}
# Display colours of the canonical organs (RGB 0-1), close to common RT contouring colours;
# organs not listed get a colour from the label palette.
ORGAN_COLOURS = {
    "SpinalCord": (1.0, 1.0, 0.0), "Heart": (0.86, 0.2, 0.27), "Esophagus": (0.55, 0.35, 0.17),
    "Lungs": (0.4, 0.7, 1.0), "Lung_L": (0.4, 0.7, 1.0), "Lung_R": (0.3, 0.55, 0.95),
    "GTV": (1.0, 0.0, 0.0), "BODY": (0.9, 0.75, 0.6),
}
_PALETTE = [(0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.58, 0.4, 0.74),
            (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5), (0.74, 0.74, 0.13)]
RISK_COLUMNS = ("patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning")
ATTRIBUTE_PREFIX = "COMPASS."   # node attributes that say what a node holds (patient, fraction, ...)


# --- scene and module logics ---------------------------------------------------------------------
def _slicer():
    try:
        import slicer
    except ImportError:
        raise CompassError("3D Slicer's Python (the application or the `slicer-core` wheel) is not "
                           "available: pip install slicer-core") from None
    return slicer


def has_app() -> bool:
    """True inside the full Slicer application (Qt, slicer.app), False on slicer-core."""
    return hasattr(_slicer(), "app")


_LOGICS: dict = {}   # scene address -> module logics created for a scene without the application


def _scene_key(scene) -> str:
    return scene.GetAddressAsString("vtkMRMLScene")


def module_logics(scene=None) -> dict:
    """The Segmentations, Sequences and Colors module logics for `scene`.

    In the application they exist already (slicer.modules.*.logic()). On slicer-core they are created
    once per scene: their SetMRMLScene registers node classes (sequence browser, colour legend) and the
    segmentation converter rules that segmentations need to hold binary labelmaps.
    """
    slicer = _slicer()
    scene = scene if scene is not None else get_scene()
    if has_app() and scene is slicer.mrmlScene:
        m = slicer.modules
        return {"segmentations": m.segmentations.logic(), "sequences": m.sequences.logic(),
                "colors": m.colors.logic(), "application": slicer.app.applicationLogic()}
    key = _scene_key(scene)
    logics = _LOGICS.get(key)
    if logics is None or logics["scene"] is not scene:
        app_logic = slicer.vtkMRMLApplicationLogic()
        app_logic.SetMRMLScene(scene)
        # The colour logic looks for colour files under home/share/ColorFiles; slicer-core ships none and
        # the built-in tables suffice, but a missing folder is logged as an error on every scene.
        app_logic.SetHomeDirectory(str(_work_home()))
        app_logic.SetShareDirectory(".")
        # Nested bundles (a Sequence of segmentations is stored as .seq.mrb) are unpacked through the
        # scene's data IO manager, which the application sets up and a bare scene lacks.
        if scene.GetDataIOManager() is None:
            cache = slicer.vtkCacheManager()
            cache.SetRemoteCacheDirectory(str(_work_home() / "cache"))
            io_manager = slicer.vtkDataIOManager()
            io_manager.SetCacheManager(cache)
            scene.SetCacheManager(cache)
            scene.SetDataIOManager(io_manager)
            logics_keepalive = [cache, io_manager]
        else:
            logics_keepalive = []
        logics = {"scene": scene, "application": app_logic, "keepalive": logics_keepalive}
        for name, cls in (("segmentations", "vtkSlicerSegmentationsModuleLogic"),
                          ("sequences", "vtkSlicerSequencesLogic"), ("colors", "vtkSlicerColorLogic")):
            logic = getattr(slicer, cls)()
            logic.SetMRMLApplicationLogic(app_logic)
            logic.SetMRMLScene(scene)
            logics[name] = logic
        _LOGICS[key] = logics
    return logics


@functools.lru_cache(maxsize=None)
def _work_home() -> Path:
    """One private folder per process for what bare scenes need on disk: an (empty) ColorFiles
    folder for the colour logic and the cache where nested bundles are unpacked."""
    home = Path(tempfile.mkdtemp(prefix="compass-mrml-"))
    (home / "ColorFiles").mkdir()
    (home / "cache").mkdir()
    return home


def new_scene():
    """A fresh scene with the module logics attached. On slicer-core it becomes `slicer.mrmlScene`
    (what slicer.util's helpers use); in the application the main scene stays the application's."""
    slicer = _slicer()
    scene = slicer.vtkMRMLScene()
    if not has_app():
        slicer.mrmlScene = scene
    module_logics(scene)
    return scene


def release_scene(scene) -> None:
    """Free a scene made on slicer-core: clear its nodes and detach the module logics created for it
    (they would otherwise keep it, and its voxels, alive: batch runs make one scene per patient)."""
    import vtk

    logics = _LOGICS.pop(_scene_key(scene), None)
    scene.Clear(1)
    if logics is not None:
        # The segmentations logic warns about the missing scene while it detaches: expected here.
        shown = vtk.vtkObject.GetGlobalWarningDisplay()
        vtk.vtkObject.GlobalWarningDisplayOff()
        try:
            for name in ("segmentations", "sequences", "colors", "application"):
                logics[name].SetMRMLScene(None)
        finally:
            vtk.vtkObject.SetGlobalWarningDisplay(shown)
    slicer = _slicer()
    if getattr(slicer, "mrmlScene", None) is scene and not has_app():
        slicer.mrmlScene = None


def get_scene(scene=None):
    """`scene`, else the application's or the current `slicer.mrmlScene`, else a new one."""
    if scene is not None:
        return scene
    slicer = _slicer()
    current = getattr(slicer, "mrmlScene", None)
    return current if current is not None else new_scene()


# --- geometry ------------------------------------------------------------------------------------
def ijk_to_ras(image) -> np.ndarray:
    """4x4 IJK->RAS matrix of a SimpleITK image (LPS): direction and origin flipped in x and y."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    m[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return m


def _vtk_matrix(m):
    return _slicer().util.vtkMatrixFromArray(np.asarray(m, dtype=float))


def node_ijk_to_ras(volume_node) -> np.ndarray:
    import vtk

    vm = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(vm)
    return _slicer().util.arrayFromVTKMatrix(vm)


def volume_to_image(volume_node):
    """A volume node back as a SimpleITK image in LPS (the inverse of `add_volume`)."""
    import SimpleITK as sitk

    slicer = _slicer()
    m = node_ijk_to_ras(volume_node)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.array(slicer.util.arrayFromVolume(volume_node)))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in (LPS_TO_RAS @ m[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in LPS_TO_RAS @ m[:3, 3]))
    return image


def _array(image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)   # (z, y, x) = Slicer's (k, j, i)


# --- nodes ---------------------------------------------------------------------------------------
def _set_attributes(node, attributes: dict | None) -> None:
    for k, v in (attributes or {}).items():
        if v is not None:
            node.SetAttribute(ATTRIBUTE_PREFIX + k, str(v))


def add_volume(image, name: str, scene=None, attributes: dict | None = None, label: bool = False):
    """A scalar (or labelmap) volume node holding `image` (SimpleITK, LPS) with RAS geometry."""
    import slicer.util

    scene = get_scene(scene)
    cls = "vtkMRMLLabelMapVolumeNode" if label else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, scene.GetUniqueNameByString(name))
    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras(image)))
    slicer.util.updateVolumeFromArray(node, _array(image))
    node.CreateDefaultDisplayNodes()
    _set_attributes(node, attributes)
    return node


def _oriented_labelmap(mask, reference_matrix):
    """A vtkOrientedImageData (segment representation) holding a 0/1 mask on the given IJK->RAS grid."""
    import vtk
    from vtk.util import numpy_support

    slicer = _slicer()
    arr = np.ascontiguousarray((_array(mask) > 0).astype(np.uint8))
    img = slicer.vtkOrientedImageData()
    img.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    img.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(img.GetPointData().GetScalars())[:] = arr.ravel()
    img.SetImageToWorldMatrix(_vtk_matrix(reference_matrix))
    return img


def organ_colour(organ: str, index: int = 0) -> tuple:
    return ORGAN_COLOURS.get(organ, _PALETTE[index % len(_PALETTE)])


def add_segmentation(masks: dict, name: str, reference_node=None, scene=None, attributes=None):
    """A segmentation node with one segment per organ (canonical name and colour) from 0/1 masks."""
    slicer = _slicer()
    scene = get_scene(scene)
    logics = module_logics(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GetUniqueNameByString(name))
    node.CreateDefaultDisplayNodes()
    if reference_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    segmentation = node.GetSegmentation()
    for i, (organ, mask) in enumerate(masks.items()):
        segment_id = segmentation.AddEmptySegment(organ, organ, list(organ_colour(organ, i)))
        if not segment_id:
            raise CompassError(f"could not add segment {organ!r} to {name!r} (segmentation converters "
                               "not registered: create the module logics with mrml.module_logics)")
        labelmap = _oriented_labelmap(mask, ijk_to_ras(mask))
        logics["segmentations"].SetBinaryLabelmapToSegment(
            labelmap, node, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    _set_attributes(node, attributes)
    return node


def segment_array(segmentation_node, organ: str, reference_node) -> np.ndarray:
    """The voxels (k, j, i) of one segment on a volume node's grid, 0/1 uint8."""
    import vtk

    slicer = _slicer()
    scene = segmentation_node.GetScene()
    logics = module_logics(scene)
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(organ)
    if not segment_id:
        raise InputError(f"segmentation {segmentation_node.GetName()!r} has no segment {organ!r}")
    label = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__compass_temp__")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        if not logics["segmentations"].ExportSegmentsToLabelmapNode(segmentation_node, ids, label, reference_node):
            raise CompassError(f"could not export segment {organ!r}")
        return (slicer.util.arrayFromVolume(label) > 0).astype(np.uint8)
    finally:
        display = label.GetDisplayNode()
        scene.RemoveNode(label)
        if display is not None:
            scene.RemoveNode(display)


def add_sequence(nodes: list, index_values: list, name: str, scene=None, browser=None):
    """A Sequence node over fractions holding copies of `nodes`; synchronised in `browser` (created
    when None, with the first sequence as master). Returns (sequence, browser)."""
    scene = get_scene(scene)
    logics = module_logics(scene)
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GetUniqueNameByString(name))
    seq.SetIndexName("fraction")
    seq.SetIndexUnit("")
    seq.SetIndexType(seq.NumericIndex)
    for node, value in zip(nodes, index_values):
        seq.SetDataNodeAtValue(node, str(value))
    if browser is None:
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode",
                                          scene.GetUniqueNameByString(f"{name} browser"))
        browser.SetAndObserveMasterSequenceNodeID(seq.GetID())
    else:
        browser.AddSynchronizedSequenceNode(seq)
    logics["sequences"].UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(seq)
    if proxy is not None:
        proxy.SetName(f"{name} (current fraction)")
        if proxy.IsA("vtkMRMLDisplayableNode") and proxy.GetDisplayNode() is None:
            proxy.CreateDefaultDisplayNodes()
    return seq, browser


# --- subject hierarchy: patient / course / fraction ----------------------------------------------
def _sh(scene):
    return _slicer().vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def _place(scene, node, parent_item) -> None:
    """Put a data node under a subject hierarchy item (creating its item where the app did not)."""
    sh = _sh(scene)
    item = sh.GetItemByDataNode(node)
    if item:
        sh.SetItemParent(item, parent_item)
    else:
        sh.CreateItem(parent_item, node)


def _child(sh, parent, name, create):
    for_item = sh.GetItemChildWithName(parent, name)
    return for_item if for_item else create(parent, name)


@dataclass
class PatientNodes:
    """What `load_patient` put into the scene (node IDs, so the object survives scene edits)."""
    patient: str
    fractions: list = field(default_factory=list)                 # fraction indices, delivery order
    volumes: dict = field(default_factory=dict)                   # (modality, fraction) -> node ID
    segmentations: dict = field(default_factory=dict)             # fraction -> node ID
    sequences: dict = field(default_factory=dict)                 # modality -> sequence node ID
    browser: str | None = None                                    # sequence browser node ID
    sh_items: dict = field(default_factory=dict)                  # "patient", "course", fraction -> SH item
    reference: object = None                                      # first fraction's reference sitk.Image
    risk_table: str | None = None                                 # table node ID (organ x fraction risk)
    risk_chart: str | None = None                                 # plot chart node ID

    def node(self, scene, modality, fraction):
        return scene.GetNodeByID(self.volumes[(modality, fraction)])


def add_fraction_series(patient_id: str, fractions, scene=None, progress=None,
                        keep_fraction_nodes: bool = True) -> PatientNodes:
    """Put a patient's fraction series into the scene.

    `fractions`: iterable of (fraction index, FractionImages) with `.ct`, `.pet`, `.dose` (SimpleITK,
    LPS, any may be None) and `.masks` (organ -> 0/1 mask). Makes one volume per modality and fraction
    and one segmentation per fraction under Patient / Course / Fraction k in the subject hierarchy, and
    a Sequence per modality (plus one for the segmentations) in one sequence browser over fractions.
    With keep_fraction_nodes=False only the sequences remain (half the memory for large cohorts).
    """
    scene = get_scene(scene)
    module_logics(scene)
    sh = _sh(scene)
    out = PatientNodes(patient=str(patient_id))
    patient_item = _child(sh, sh.GetSceneItemID(), out.patient, sh.CreateSubjectItem)
    course_item = _child(sh, patient_item, "Course", sh.CreateStudyItem)
    out.sh_items.update(patient=patient_item, course=course_item)
    fractions = list(fractions)
    per_modality = {m: ([], []) for m in (*MODALITIES, "segmentation")}
    for n, (k, images) in enumerate(fractions):
        report(progress, n / max(len(fractions), 1), f"loading {patient_id} fraction {k}")
        frac_item = _child(sh, course_item, f"Fraction {k}", sh.CreateFolderItem)
        out.sh_items[k] = frac_item
        out.fractions.append(k)
        if out.reference is None:
            out.reference = next((i for i in (getattr(images, "reference", None), images.ct, images.dose)
                                  if i is not None), None)
        attrs = {"patient": patient_id, "fraction": k}
        first = None
        for m in MODALITIES:
            image = getattr(images, m, None)
            if image is None:
                continue
            node = add_volume(image, f"{patient_id} F{k} {_MODALITY_NAMES[m]}", scene,
                              {**attrs, "modality": m})
            _style_volume(node, m)
            first = first or node
            out.volumes[(m, k)] = node.GetID()
            per_modality[m][0].append(node)
            per_modality[m][1].append(k)
            _place(scene, node, frac_item)
        masks = getattr(images, "masks", None) or {}
        if masks:
            seg = add_segmentation(masks, f"{patient_id} F{k} organs", first, scene,
                                   {**attrs, "modality": "segmentation"})
            out.segmentations[k] = seg.GetID()
            per_modality["segmentation"][0].append(seg)
            per_modality["segmentation"][1].append(k)
            _place(scene, seg, frac_item)
    browser = None
    for m, (nodes, values) in per_modality.items():
        if not nodes:
            continue
        label = _MODALITY_NAMES.get(m, "organs")
        seq, browser = add_sequence(nodes, values, f"{patient_id} {label}", scene, browser)
        seq.SetAttribute(ATTRIBUTE_PREFIX + "patient", out.patient)
        seq.SetAttribute(ATTRIBUTE_PREFIX + "modality", m)
        out.sequences[m] = seq.GetID()
        _place(scene, seq, course_item)
    if browser is not None:
        browser.SetName(f"{patient_id} fractions")
        out.browser = browser.GetID()
        _place(scene, browser, course_item)
    if not keep_fraction_nodes:
        for node_id in [*out.volumes.values(), *out.segmentations.values()]:
            scene.RemoveNode(scene.GetNodeByID(node_id))
        out.volumes.clear()
        out.segmentations.clear()
    report(progress, 1.0, f"loaded {patient_id}")
    return out


def _style_volume(node, modality: str) -> None:
    """CT in a soft-tissue window, PET/dose in colour, so a freshly loaded patient reads at once."""
    display = node.GetDisplayNode()
    if display is None:
        return
    if modality == "ct":
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(400.0, 40.0)
    else:
        colour_id = {"pet": "vtkMRMLPETProceduralColorNodePET-Heat"}.get(modality, "vtkMRMLColorTableNodeRainbow")
        if node.GetScene().GetNodeByID(colour_id) is not None:
            display.SetAndObserveColorNodeID(colour_id)


def read_fractions(cohort, patient_id: str, reference: str = "ct", fractions=None, progress=None) -> dict:
    """fraction index -> FractionImages, read through COMPASSLib's ingest (one reference grid)."""
    from COMPASSLib import ingest
    from COMPASSLib.cohort import Cohort

    if not isinstance(cohort, Cohort):
        cohort = Cohort.load(cohort)
    patient = cohort.patient(patient_id)
    indices = [f.index for f in patient.fractions] if fractions is None else list(fractions)
    loader = ingest.PatientLoader(cohort, patient_id, reference=reference)   # grid and structures read once
    out = {}
    for n, k in enumerate(indices):
        report(progress, n / max(len(indices), 1), f"reading {patient_id} fraction {k}")
        out[k] = loader.load(k)
    return out


def load_patient(cohort, patient_id: str, scene=None, reference: str = "ct", fractions=None,
                 risk=None, bed: bool = True, alpha_beta_overrides=None, progress=None,
                 keep_fraction_nodes: bool = True) -> PatientNodes:
    """Everything COMPASS shows for one patient: the fraction series (CT, PET, dose, organs), the
    cumulative BED and EQD2 maps (organ alpha/beta from Resources/organs.yaml, or overrides), and
    with `risk` (risk.csv or DataFrame) the risk table and chart, with toxicity onsets from outcomes.csv."""
    from COMPASSLib.cohort import Cohort

    if not isinstance(cohort, Cohort):
        cohort = Cohort.load(cohort)
    scene = get_scene(scene)
    images = read_fractions(cohort, patient_id, reference, fractions, scaled(progress, 0.0, 0.4))
    nodes = add_fraction_series(patient_id, images.items(), scene, scaled(progress, 0.4, 0.8),
                                keep_fraction_nodes)
    if bed and images:
        from COMPASSLib import dose

        first = images[min(images)]
        ab = dose.alpha_beta_map(first.masks, first.dose, alpha_beta_overrides)
        maps = dose.cumulative_bed_eqd2({k: f.dose for k, f in images.items() if f.dose is not None}, ab)
        made_by = "organ map (Resources/organs.yaml)" + (f", overrides {alpha_beta_overrides}"
                                                         if alpha_beta_overrides else "")
        for kind in ("bed", "eqd2"):
            add_dose_maps(nodes, maps[kind], kind, scene, alpha_beta=made_by)
    report(progress, 0.9, f"adding risk of {patient_id}")
    add_provenance(scene, f"{patient_id} provenance", settings={
        "patient": patient_id, "reference": reference, "fractions": nodes.fractions, "bed": bed,
        "alpha_beta_overrides": alpha_beta_overrides,
        "risk": str(risk) if risk is not None and not hasattr(risk, "columns") else
        ("DataFrame" if risk is not None else None)}, inputs=_input_checksums(cohort, risk))
    if risk is not None:
        onsets = cohort.onsets(patient_id)
        nodes.risk_table = add_risk_table(risk, patient_id, scene).GetID()
        nodes.risk_chart = add_risk_plot(risk, patient_id, onsets, scene).GetID()
    report(progress, 1.0, f"loaded {patient_id}")
    return nodes


def _input_checksums(cohort, risk) -> dict:
    from COMPASSLib.provenance import sha256_file

    out = {}
    manifest = cohort.root / "cohort.json"
    if manifest.is_file():
        out["cohort.json"] = sha256_file(manifest)
    if risk is not None and not hasattr(risk, "columns") and Path(risk).is_file():
        out["risk.csv"] = sha256_file(risk)
    return out


def add_provenance(scene, name: str, settings: dict, inputs: dict | None = None):
    """A text node holding COMPASSLib.provenance.record(...) as JSON, so a saved .mrb records the
    settings, library versions and input checksums that made it."""
    import json

    from COMPASSLib.provenance import record

    node = scene.AddNewNodeByClass("vtkMRMLTextNode", scene.GetUniqueNameByString(name))
    node.SetText(json.dumps(record(settings, inputs), indent=2, default=str))
    node.SetAttribute(ATTRIBUTE_PREFIX + "content", "provenance")
    return node


# --- BED / EQD2 ----------------------------------------------------------------------------------
def add_dose_maps(patient: PatientNodes, maps: dict, kind: str, scene=None, alpha_beta=None,
                  progress=None) -> str:
    """Add cumulative BED or EQD2 maps (fraction -> SimpleITK image in Gy) as volumes under each
    fraction and as a Sequence synchronised with the patient's browser. Returns the sequence ID.
    `alpha_beta` (what made the map: Gy, or 'organ map') is recorded on every node."""
    scene = get_scene(scene)
    kind = kind.lower()
    label = _MODALITY_NAMES.get(kind, kind.upper())
    nodes, values = [], []
    for n, (k, image) in enumerate(sorted(maps.items())):
        report(progress, n / max(len(maps), 1), f"adding {label} fraction {k}")
        node = add_volume(image, f"{patient.patient} F{k} {label} cumulative", scene,
                          {"patient": patient.patient, "fraction": k, "modality": kind,
                           "alpha_beta_gy": alpha_beta})
        _style_volume(node, "dose")
        patient.volumes[(kind, k)] = node.GetID()
        if k in patient.sh_items:
            _place(scene, node, patient.sh_items[k])
        nodes.append(node)
        values.append(k)
    browser = scene.GetNodeByID(patient.browser) if patient.browser else None
    seq, browser = add_sequence(nodes, values, f"{patient.patient} {label}", scene, browser)
    seq.SetAttribute(ATTRIBUTE_PREFIX + "modality", kind)
    patient.sequences[kind] = seq.GetID()
    patient.browser = browser.GetID()
    if "course" in patient.sh_items:
        _place(scene, seq, patient.sh_items["course"])
    return seq.GetID()


# --- risk table and plot -------------------------------------------------------------------------
def read_risk(risk) -> "pandas.DataFrame":  # noqa: F821
    """risk.csv (path) or a DataFrame in the `compass run` contract; checks the columns."""
    import pandas as pd

    source = None
    if not isinstance(risk, pd.DataFrame):
        source = Path(risk)
        try:
            risk = pd.read_csv(source, dtype={"patient": str, "organ": str})
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read risk table: {e}", file=source) from None
    missing = [c for c in RISK_COLUMNS if c not in risk.columns]
    if missing:
        raise InputError(f"risk table lacks column(s) {missing} (expected {', '.join(RISK_COLUMNS)})",
                         file=source)
    return risk


def add_risk_table(risk, patient: str | None = None, scene=None, name: str | None = None):
    """A table node organ x fraction (risk, ci_low, ci_high, warning) for one patient (or all)."""
    scene = get_scene(scene)
    df = read_risk(risk)
    if patient is not None:
        df = df[df["patient"].astype(str) == str(patient)]
        if df.empty:
            raise InputError(f"risk table has no rows for patient {patient}", patient=patient)
    df = df.sort_values(["patient", "organ", "fraction"], kind="stable")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode",
                                    scene.GetUniqueNameByString(name or f"{patient or 'cohort'} risk"))
    _fill_table(table, {c: (df[c].astype(str).tolist() if c in ("patient", "organ") else
                            np.asarray(df[c], dtype=np.int32 if c in ("fraction", "warning") else np.float64))
                        for c in RISK_COLUMNS})
    table.SetUseColumnTitleAsColumnHeader(True)
    for c, unit in (("risk", "probability"), ("ci_low", "probability"), ("ci_high", "probability")):
        table.SetColumnUnitLabel(c, unit)
    table.SetColumnDescription("warning", "1 from the first fraction whose risk passes the twin's threshold")
    _set_attributes(table, {"patient": patient, "content": "risk"})
    return table


def _fill_table(table, columns: dict) -> None:
    """Replace a table node's columns: str lists become string columns (slicer.util's
    updateTableFromArray takes numbers only), numpy arrays keep their dtype."""
    import vtk
    from vtk.util import numpy_support

    vtable = table.GetTable()
    while vtable.GetNumberOfColumns():
        vtable.RemoveColumn(0)
    for name, values in columns.items():
        if isinstance(values, list):
            column = vtk.vtkStringArray()
            for v in values:
                column.InsertNextValue(v)
        else:
            column = numpy_support.numpy_to_vtk(np.ascontiguousarray(values), deep=True)
        column.SetName(name)
        vtable.AddColumn(column)
    table.Modified()


def add_risk_plot(risk, patient: str, onsets: dict | None = None, scene=None):
    """A plot chart of risk over fractions, one line per organ, with the toxicity onset (organ ->
    fraction, from outcomes.csv) and the first warning marked. Returns the chart node."""
    scene = get_scene(scene)
    df = read_risk(risk)
    df = df[df["patient"].astype(str) == str(patient)]
    if df.empty:
        raise InputError(f"risk table has no rows for patient {patient}", patient=patient)
    organs = list(dict.fromkeys(df["organ"]))
    fractions = sorted(df["fraction"].unique())
    wide = df.pivot_table(index="fraction", columns="organ", values="risk", aggfunc="first").reindex(fractions)
    cols, names = [np.asarray(fractions, dtype=np.float64)], ["fraction"]
    for organ in organs:
        cols.append(np.asarray(wide[organ], dtype=np.float64))
        names.append(organ)
    markers = {}   # marker series: (organ, kind) -> (x, y)
    for organ in organs:
        rows = df[df["organ"] == organ].sort_values("fraction")
        warned = rows[rows["warning"].astype(int) > 0]
        if len(warned):
            markers[(organ, "warning")] = (float(warned["fraction"].iloc[0]), float(warned["risk"].iloc[0]))
        onset = (onsets or {}).get(organ)
        if onset is not None and not (isinstance(onset, float) and np.isnan(onset)):
            at = rows[rows["fraction"] <= onset]
            y = float(at["risk"].iloc[-1]) if len(at) else float(rows["risk"].iloc[0])
            markers[(organ, "onset")] = (float(onset), y)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GetUniqueNameByString(f"{patient} risk by fraction"))
    _fill_table(table, dict(zip(names, cols)))
    marker_table = None
    if markers:
        marker_table = scene.AddNewNodeByClass("vtkMRMLTableNode",
                                               scene.GetUniqueNameByString(f"{patient} onset and warning"))
        mcols, mnames = [], []
        for (organ, kind), (x, y) in markers.items():
            mcols += [np.array([x]), np.array([y])]
            mnames += [f"{organ} {kind} fraction", f"{organ} {kind} risk"]
        _fill_table(marker_table, dict(zip(mnames, mcols)))
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GetUniqueNameByString(f"{patient} risk chart"))
    chart.SetTitle(f"Toxicity risk over fractions: {patient}")
    chart.SetXAxisTitle("fraction")
    chart.SetYAxisTitle("risk (probability of CTCAE grade >= 1)")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(0.0, 1.0)
    for i, organ in enumerate(organs):
        colour = organ_colour(organ, i)
        s = _series(scene, f"{patient} {organ} risk", table, "fraction", organ, colour)
        s.SetMarkerStyle(s.MarkerStyleCircle)
        chart.AddAndObservePlotSeriesNodeID(s.GetID())
        for kind, style in (("onset", "MarkerStyleDiamond"), ("warning", "MarkerStyleSquare")):
            if (organ, kind) in markers:
                m = _series(scene, f"{patient} {organ} {kind}", marker_table, f"{organ} {kind} fraction",
                            f"{organ} {kind} risk", colour)
                m.SetLineStyle(m.LineStyleNone)
                m.SetMarkerStyle(getattr(m, style))
                m.SetMarkerSize(12 if kind == "onset" else 9)
                chart.AddAndObservePlotSeriesNodeID(m.GetID())
    _set_attributes(chart, {"patient": patient, "content": "risk"})
    return chart


def _series(scene, name, table, x, y, colour):
    s = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GetUniqueNameByString(name))
    s.SetAndObserveTableNodeID(table.GetID())
    s.SetXColumnName(x)
    s.SetYColumnName(y)
    s.SetPlotType(s.PlotTypeScatter)
    s.SetColor(*colour)
    return s


def show_plot(chart) -> None:
    """Show a chart in the application's plot view (nothing to do on slicer-core)."""
    if has_app():
        slicer = _slicer()
        slicer.modules.plots.logic().ShowChartInLayout(chart)


# --- dose-texture overlays -----------------------------------------------------------------------
_TEXTURE_COLOURS = ((0.0, (0.0, 0.0, 0.02)), (0.25, (0.34, 0.06, 0.43)), (0.5, (0.73, 0.21, 0.33)),
                    (0.75, (0.98, 0.55, 0.04)), (1.0, (0.99, 1.0, 0.64)))  # dark-to-bright, inferno-like


def texture_colour_table(scene=None):
    """The colour table of texture overlays (dark to bright; colour 0 transparent so the CT shows)."""
    scene = get_scene(scene)
    name = "COMPASS texture"
    for node in _nodes(scene, "vtkMRMLColorTableNode"):
        if node.GetName() == name:
            return node
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    table.SetTypeToUser()
    n = 256
    table.SetNumberOfColors(n)
    xs = [p for p, _ in _TEXTURE_COLOURS]
    for i in range(n):
        t = i / (n - 1)
        rgb = [float(np.interp(t, xs, [c[j] for _, c in _TEXTURE_COLOURS])) for j in range(3)]
        table.SetColor(i, f"{i}", *rgb, 0.0 if i == 0 else 1.0)
    table.SetAttribute("Category", "COMPASS")
    return table


def add_texture_overlay(texture, name: str, background_node=None, scene=None, reference=None,
                        attributes=None, opacity: float = 0.6):
    """A dose-texture map as a colour overlay with a colour legend, set as the slice views' foreground
    over `background_node` where views exist. `texture`: SimpleITK image, or a (z, y, x) array on
    `reference`'s grid (as features.texture_maps returns). NaN (ROI voxels without pairs) -> 0."""
    import SimpleITK as sitk

    scene = get_scene(scene)
    if not isinstance(texture, sitk.Image):
        if reference is None:
            raise InputError(f"texture map {name!r} is an array: pass the reference image it lies on")
        arr = np.asarray(texture, dtype=np.float32)
        if arr.shape != _array(reference).shape:
            raise InputError(f"texture map {name!r} shape {arr.shape} differs from the reference grid "
                             f"{_array(reference).shape}")
        texture = sitk.GetImageFromArray(np.nan_to_num(arr, nan=0.0))
        texture.CopyInformation(reference)
    node = add_volume(texture, name, scene, {**(attributes or {}), "modality": "texture"})
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(texture_colour_table(scene).GetID())
    values = _array(texture)
    inside = values[values != 0]
    if inside.size:
        low, high = np.percentile(inside, [1, 99])
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(float(low), float(high if high > low else low + 1e-6))
    display.SetApplyThreshold(True)
    display.SetLowerThreshold(float(np.min(inside)) if inside.size else 0.0)
    display.SetUpperThreshold(float(np.max(inside)) if inside.size else 1.0)
    legend = module_logics(scene)["colors"].AddDefaultColorLegendDisplayNode(node)
    if legend is not None:
        legend.SetTitleText(name)
        legend.SetVisibility(True)
    show_overlay(node, background_node, scene, opacity)
    return node


def add_texture_maps(patient: PatientNodes, organ: str, fraction: int, features=None, radius: int | None = None,
                     bin_width_gy: float | None = None, device: str = "cpu", scene=None, progress=None,
                     feature_settings=None) -> list:
    """Voxelwise dose-texture maps (COMPASSLib.features.texture_maps) of the organ's cumulative BED after
    `fraction`, added as overlays over that fraction's CT. Returns the overlay nodes.

    The same numbers as `compass run --texture-maps` and the tex_ columns: the organ's BED is accumulated
    from the scene's fraction doses with the organ's own alpha/beta (features.organ_bed, as the feature
    table does), and features, radius and bin width not given come from `feature_settings` (default:
    the run's default FeatureSettings) through texture_summary.map_settings."""
    import SimpleITK as sitk

    from COMPASSLib.features.organ_bed import cumulative_organ_bed
    from COMPASSLib.features.settings import FeatureSettings
    from COMPASSLib.features.texture_maps import texture_maps
    from COMPASSLib.features.texture_summary import map_settings

    scene = get_scene(scene)
    fs = feature_settings or FeatureSettings()
    tex = map_settings(fs)
    features = features or tex["features"]
    radius = int(radius or tex["radius"])
    bin_width_gy = float(bin_width_gy or tex["bin_width_gy"])
    delivered = [k for k in patient.fractions if k <= fraction]
    if fraction not in patient.fractions or any(("dose", k) not in patient.volumes for k in delivered):
        raise InputError(f"no dose volumes up to fraction {fraction} in the scene: load the patient's fractions",
                         patient=patient.patient, fraction=fraction)
    doses = [volume_to_image(scene.GetNodeByID(patient.volumes[("dose", k)])) for k in delivered]
    bed = sitk.GetImageFromArray(cumulative_organ_bed(doses, organ, fs.alpha_beta))
    bed.CopyInformation(doses[-1])
    seg = scene.GetNodeByID(patient.segmentations.get(fraction) or patient.segmentations[min(patient.segmentations)])
    dose_node = scene.GetNodeByID(patient.volumes[("dose", fraction)])
    background = scene.GetNodeByID(patient.volumes.get(("ct", fraction)) or patient.volumes[("dose", fraction)])
    mask = sitk.GetImageFromArray(segment_array(seg, organ, dose_node))
    mask.CopyInformation(bed)
    report(progress, 0.0, f"texture maps of {organ}, fraction {fraction}")
    maps = texture_maps(bed, mask, features, radius=radius, bin_width=bin_width_gy, device=device,
                        progress=scaled(progress, 0.0, 0.9))
    nodes = []
    for name, image in maps.items():
        node = add_texture_overlay(image, f"{patient.patient} F{fraction} {organ} {name} (BED, r={radius})",
                                   background, scene, reference=bed,
                                   attributes={"patient": patient.patient, "fraction": fraction, "organ": organ,
                                               "feature": name, "radius_voxels": radius, "bin_width_gy": bin_width_gy})
        if fraction in patient.sh_items:
            _place(scene, node, patient.sh_items[fraction])
        nodes.append(node)
    report(progress, 1.0, "texture maps done")
    return nodes


def add_texture_files(run_dir, patient_id: str, fraction: int, scene=None, background_node=None) -> list:
    """The texture maps `compass run --texture-maps` wrote (RUN/texture/<patient>/fx<k>/<organ>_<feature>.nrrd)
    as overlays; the fraction's CT written beside them (ct.nrrd) is the background unless one is given."""
    import SimpleITK as sitk

    from COMPASSLib.atomic import read_json, safe_filename

    folder = Path(run_dir) / "texture" / safe_filename(patient_id) / f"fx{fraction}"
    prov = folder / "texture_maps.json"
    if not prov.is_file():
        raise InputError("no texture maps for this patient and fraction (run `compass run --texture-maps`)",
                         file=folder, patient=patient_id, fraction=fraction)
    doc = read_json(prov, "texture-map provenance")
    scene = get_scene(scene)
    if background_node is None and (folder / "ct.nrrd").is_file():
        background_node = add_volume(sitk.ReadImage(str(folder / "ct.nrrd")), f"{patient_id} F{fraction} CT", scene,
                                     {"patient": patient_id, "fraction": fraction, "modality": "ct"})
        _style_volume(background_node, "ct")
    texture = doc.get("settings", {}).get("texture", {})
    return [add_texture_overlay(sitk.ReadImage(str(folder / name)), f"{patient_id} F{fraction} {name[:-5]} (BED)",
                                background_node, scene,
                                attributes={"patient": patient_id, "fraction": fraction, "file": name,
                                            "radius_voxels": texture.get("radius"),
                                            "bin_width_gy": texture.get("bin_width_gy")})
            for name in doc.get("outputs", [])]


def show_overlay(foreground_node, background_node=None, scene=None, opacity: float = 0.6) -> None:
    """Set foreground (and background) of every slice view of the scene (none exist on slicer-core)."""
    scene = get_scene(scene)
    for composite in _nodes(scene, "vtkMRMLSliceCompositeNode"):
        if background_node is not None:
            composite.SetBackgroundVolumeID(background_node.GetID())
        composite.SetForegroundVolumeID(foreground_node.GetID())
        composite.SetForegroundOpacity(opacity)


def _nodes(scene, cls) -> list:
    collection = scene.GetNodesByClass(cls)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def nodes_by_class(scene, cls) -> list:
    """Nodes of a class (subclasses included), e.g. for tests and summaries."""
    return _nodes(get_scene(scene), cls)


# --- scene files ---------------------------------------------------------------------------------
def save_scene(path, scene=None) -> Path:
    """Save the scene as a Medical Reality Bundle (.mrb: the .mrml plus every node's data), atomically.

    Uses vtkMRMLApplicationLogic's data-bundle writer, which slicer.util.saveScene also ends in and
    which needs no `slicer.app`, so batch runs on slicer-core write the same files as the application.
    """
    from COMPASSLib.atomic import atomic_path

    scene = get_scene(scene)
    path = Path(path)
    if path.suffix.lower() != ".mrb":
        raise InputError("scene file must end in .mrb", file=path)
    app_logic = module_logics(scene)["application"]
    work = Path(tempfile.mkdtemp(prefix="compass-mrb-"))
    bundle = work / path.stem   # the folder name becomes the .mrml name inside the bundle
    bundle.mkdir()
    url, root = scene.GetURL() or "", scene.GetRootDirectory() or ""
    if not url:   # the writer restores the scene's URL afterwards and fails on an unset one
        scene.SetURL(str(bundle / f"{path.stem}.mrml"))
        scene.SetRootDirectory(str(bundle))
    try:
        if not app_logic.SaveSceneToSlicerDataBundleDirectory(str(bundle), None):
            raise CompassError("could not write the scene bundle", file=path)
        with atomic_path(path) as tmp:
            if not app_logic.Zip(str(tmp), str(bundle)):
                raise CompassError("could not zip the scene bundle", file=path)
    finally:
        if not url:
            scene.SetURL("")
            scene.SetRootDirectory(root)
        shutil.rmtree(work, ignore_errors=True)
    return path


def load_scene(path, scene=None):
    """Read an .mrb into `scene` (a new scene when None; the scene is returned)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("scene file not found", file=path)
    scene = scene if scene is not None else new_scene()
    app_logic = module_logics(scene)["application"]
    work = tempfile.mkdtemp(prefix="compass-mrb-read-")
    try:
        if not app_logic.OpenSlicerDataBundle(str(path), work):
            raise InputError("not a readable Slicer scene bundle (.mrb)", file=path)
    finally:
        # Storage nodes have read their files into memory by now.
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    return scene


def summary(scene=None) -> dict:
    """Count of nodes per class, the quick check that a scene holds what a run should put there."""
    scene = get_scene(scene)
    counts: dict = {}
    for i in range(scene.GetNumberOfNodes()):
        cls = scene.GetNthNode(i).GetClassName()
        counts[cls] = counts.get(cls, 0) + 1
    return counts
