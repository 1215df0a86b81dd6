"""Data nodes from COMPASSLib images: volumes (with per-modality display), organ segmentations and their
voxels, fraction Sequences, and the `COMPASS.*` attributes that say what a node holds."""
from __future__ import annotations

import numpy as np

from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.mrml.coordinates import _array, _vtk_matrix, ijk_to_ras
from COMPASSLib.mrml.scene import _slicer, get_scene, module_logics

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


def _set_attributes(node, attributes: dict | None) -> None:
    for k, v in (attributes or {}).items():
        if v is not None:
            node.SetAttribute(ATTRIBUTE_PREFIX + k, str(v))


# --- volumes -------------------------------------------------------------------------------------
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


# --- sequences -----------------------------------------------------------------------------------
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
