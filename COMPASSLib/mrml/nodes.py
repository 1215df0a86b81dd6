"""Data nodes from COMPASSLib images: volumes (with per-modality display), organ segmentations (voxels and
3D surfaces), fraction Sequences browsed through proxy nodes, and the `COMPASS.*` attributes that say what a
node holds."""
from __future__ import annotations

import numpy as np

from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.mrml.coordinates import _array, _vtk_matrix, ijk_to_ras
from COMPASSLib.mrml.scene import _nodes, _slicer, get_scene, module_logics

ATTRIBUTE_PREFIX = "COMPASS."   # node attributes that say what a node holds (patient, fraction, ...)
# Display colours of the canonical organs (RGB 0-1), close to common RT contouring colours;
# organs not listed get a colour from the label palette.
ORGAN_COLOURS = {
    "SpinalCord": (1.0, 1.0, 0.0), "Heart": (0.86, 0.2, 0.27), "Esophagus": (0.55, 0.35, 0.17),
    "Lungs": (0.4, 0.7, 1.0), "Lung_L": (0.4, 0.7, 1.0), "Lung_R": (0.3, 0.55, 0.95),
    "GTV": (1.0, 0.0, 0.0), "BODY": (0.9, 0.75, 0.6),
}
_PALETTE = [(0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.58, 0.4, 0.74),
            (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5), (0.74, 0.74, 0.13)]
DOSE_MODALITIES = ("dose", "bed", "eqd2")   # volumes in Gy, shown as dose
# Below 1 cGy a dose/BED voxel reads as "no dose" and is transparent, so the CT shows through there
# (resampling leaves values just above 0 outside the field). SlicerRT's RTDOSE import hides below
# 0.5 x the dose unit, which is meant for plan totals and would hide a quarter of a 2 Gy fraction.
NO_DOSE_GY = 0.01
CT_WINDOW_LEVEL = (400.0, 40.0)   # soft tissue (HU)
ENVELOPE_OPACITY_3D = 0.12        # BODY/External in the 3D view: a glass skin over the organs


def _set_attributes(node, attributes: dict | None) -> None:
    for k, v in (attributes or {}).items():
        if v is not None:
            node.SetAttribute(ATTRIBUTE_PREFIX + k, str(v))


# --- volumes -------------------------------------------------------------------------------------
def volume_node(image, name: str, attributes: dict | None = None, label: bool = False):
    """A scalar (or labelmap) volume node holding `image` (SimpleITK, LPS) with RAS geometry, in no scene:
    what a Sequence stores (it keeps its own copy), so a fraction's voxels need not pass through the scene."""
    import slicer.util

    slicer = _slicer()
    node = slicer.vtkMRMLLabelMapVolumeNode() if label else slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras(image)))
    slicer.util.updateVolumeFromArray(node, _array(image))
    _set_attributes(node, attributes)
    return node


def add_volume(image, name: str, scene=None, attributes: dict | None = None, label: bool = False):
    """A scalar (or labelmap) volume node holding `image` (SimpleITK, LPS) with RAS geometry, in the scene."""
    scene = get_scene(scene)
    node = scene.AddNode(volume_node(image, scene.GetUniqueNameByString(name), attributes, label))
    node.CreateDefaultDisplayNodes()
    return node


def _style_volume(node, modality: str, high: float | None = None) -> None:
    """CT in a soft-tissue window, PET in colour, dose/BED/EQD2 in colour from 0 to `high` Gy (the
    series' maximum, so every fraction is drawn on the same scale and a rising cumulative BED shows)
    with the no-dose voxels transparent, so a freshly loaded patient reads at once."""
    display = node.GetDisplayNode()
    if display is None:
        return
    if modality == "ct":
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(*CT_WINDOW_LEVEL)
        return
    if modality == "pet":
        if node.GetScene().GetNodeByID(PET_COLOURS) is not None:
            display.SetAndObserveColorNodeID(PET_COLOURS)
    else:
        display.SetAndObserveColorNodeID(dose_colour_table(node.GetScene()).GetID())
    if modality in DOSE_MODALITIES and high is not None and high > NO_DOSE_GY:
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(0.0, float(high))
        display.SetAutoThreshold(False)
        display.SetLowerThreshold(NO_DOSE_GY)
        display.SetUpperThreshold(float(high))
        display.SetApplyThreshold(True)


PET_COLOURS = "vtkMRMLPETProceduralColorNodePET-Heat"
DOSE_COLOURS = "COMPASS dose"


def colour_table(scene, name: str, rgba, n: int = 256):
    """The user colour table `name` of the scene (made once): entry i has the colour rgba(i / (n - 1))."""
    for node in _nodes(scene, "vtkMRMLColorTableNode"):
        if node.GetName() == name:
            return node
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    table.SetTypeToUser()
    table.SetNumberOfColors(n)
    for i in range(n):
        table.SetColor(i, f"{i}", *rgba(i / (n - 1)))
    table.SetAttribute("Category", "COMPASS")
    return table


def dose_colour_table(scene=None):
    """Dose, BED and EQD2 as a planning system washes dose: purple at 0 through blue, green and yellow to
    red at the top of the window (hue 0.8 -> 0). Slicer's Rainbow runs the other way (red at 0: the
    low-dose bath would read as hot), and its ReverseRainbow wraps through magenta (purple -> red only)."""
    import colorsys

    return colour_table(get_scene(scene), DOSE_COLOURS, lambda t: (*colorsys.hsv_to_rgb(0.8 * (1 - t), 1, 1), 1.0))


# --- segmentations -------------------------------------------------------------------------------
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


def segmentation_node(masks: dict, name: str, reference_node=None, scene=None, attributes=None,
                      closed_surface: bool = True):
    """A segmentation node (in no scene) with one segment per organ (canonical name and colour) from 0/1
    masks, and with `closed_surface` the 3D surfaces made from them (Slicer shows a segmentation in 3D
    only once that representation exists; it is also kept when the node is copied into a Sequence)."""
    slicer = _slicer()
    logics = module_logics(get_scene(scene))
    node = slicer.vtkMRMLSegmentationNode()
    node.SetName(name)
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
    if closed_surface and masks and not node.CreateClosedSurfaceRepresentation():
        raise CompassError(f"could not make the 3D surfaces of {name!r}")
    _set_attributes(node, attributes)
    return node


def add_segmentation(masks: dict, name: str, reference_node=None, scene=None, attributes=None,
                     closed_surface: bool = True):
    """A segmentation node in the scene with one segment per organ (canonical name and colour) from 0/1
    masks, outlined in slice views and (with `closed_surface`) drawn as surfaces in 3D."""
    scene = get_scene(scene)
    node = scene.AddNode(segmentation_node(masks, scene.GetUniqueNameByString(name), reference_node, scene,
                                           attributes, closed_surface))
    node.CreateDefaultDisplayNodes()
    _style_segmentation(node)
    return node


def _style_segmentation(node) -> None:
    """Organ outlines in the slice views (a fill would hide the dose colours under it) and closed
    surfaces in 3D."""
    display = node.GetDisplayNode()
    if display is None:
        return
    display.SetVisibility(True)
    display.SetVisibility2DOutline(True)
    display.SetVisibility2DFill(False)
    display.SetVisibility3D(True)
    display.SetPreferredDisplayRepresentationName2D("Binary labelmap")
    if node.GetSegmentation().ContainsRepresentation("Closed surface"):
        display.SetPreferredDisplayRepresentationName3D("Closed surface")
    # An envelope (BODY/External) drawn opaque in 3D would hide every organ inside it.
    from COMPASSLib import resources

    segmentation = node.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(i)
        if resources.is_envelope(segmentation.GetSegment(segment_id).GetName()):
            display.SetSegmentOpacity3D(segment_id, ENVELOPE_OPACITY_3D)


def segment_array(segmentation_node, organ: str, reference_node) -> np.ndarray:
    """The voxels (k, j, i) of one segment on a volume node's grid, 0/1 uint8."""
    import vtk

    slicer = _slicer()
    scene = segmentation_node.GetScene()
    logics = module_logics(scene)
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(organ)
    if not segment_id:
        raise InputError(f"segmentation {segmentation_node.GetName()!r} has no segment {organ!r}")
    colour_tables = {n.GetID() for n in _nodes(scene, "vtkMRMLColorTableNode")}
    label = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__compass_temp__")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        if not logics["segmentations"].ExportSegmentsToLabelmapNode(segmentation_node, ids, label, reference_node):
            raise CompassError(f"could not export segment {organ!r}")
        return (slicer.util.arrayFromVolume(label) > 0).astype(np.uint8)
    finally:
        # the export also makes a colour table for the label (<segmentation>_ColorTable): only the
        # temporary label uses it, and left behind it would be saved with the scene
        made = [n for n in _nodes(scene, "vtkMRMLColorTableNode") if n.GetID() not in colour_tables]
        display = label.GetDisplayNode()
        scene.RemoveNode(label)
        for node in [display, *made]:
            if node is not None:
                scene.RemoveNode(node)


# --- sequences -----------------------------------------------------------------------------------
def new_sequence(name: str, scene=None):
    """An empty Sequence node indexed by fraction (numeric, so fractions sort as numbers)."""
    scene = get_scene(scene)
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GetUniqueNameByString(name))
    seq.SetIndexName("fraction")
    seq.SetIndexUnit("")
    seq.SetIndexType(seq.NumericIndex)
    return seq


def synchronise(seq, browser=None, scene=None, name: str | None = None):
    """Browse `seq` in `browser` (created when None, with `seq` as master) and return (proxy, browser).

    The proxy node is what views show. Its voxels are the selected item's own (a shallow copy: the
    browser's "save changes" on), so the current fraction is not held a second time; an edit of the proxy
    (e.g. in the Segment Editor) goes into that fraction's item."""
    scene = get_scene(scene)
    logics = module_logics(scene)
    if browser is None:
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode",
                                          scene.GetUniqueNameByString(f"{seq.GetName()} browser"))
        browser.SetAndObserveMasterSequenceNodeID(seq.GetID())
        # the toolbar and module show "fraction 3", not the item number
        browser.SetIndexDisplayMode(browser.IndexDisplayAsIndexValue)
    else:
        browser.AddSynchronizedSequenceNode(seq)
    browser.SetSaveChanges(seq, True)
    logics["sequences"].UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(seq)
    if proxy is not None:
        proxy.SetName(f"{name or seq.GetName()} (current fraction)")
        if proxy.IsA("vtkMRMLDisplayableNode") and proxy.GetDisplayNode() is None:
            proxy.CreateDefaultDisplayNodes()
    return proxy, browser


def add_sequence(nodes: list, index_values: list, name: str, scene=None, browser=None):
    """A Sequence node over fractions holding copies of `nodes`; synchronised in `browser` (created
    when None, with the first sequence as master). Returns (sequence, browser)."""
    seq = new_sequence(name, scene)
    for node, value in zip(nodes, index_values):
        seq.SetDataNodeAtValue(node, str(value))
    _, browser = synchronise(seq, browser, scene, name)
    return seq, browser
