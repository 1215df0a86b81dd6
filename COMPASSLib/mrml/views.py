"""Slice views: the views' nodes of a scene (made as the application makes them where a scene has none),
their layers (background, foreground and its opacity), the layout, and fitting the views to the volume.

In the application's scene the layout manager's views exist, each with its vtkMRMLSliceCompositeNode
(the layers it shows). A scene made on slicer-core, or a batch run's own scene inside Slicer, has none.
Slicer makes them in two steps, and so does
`ensure_slice_views`: vtkMRMLLayoutLogic creates the singleton layout node and the view nodes of the
layout (Red/Yellow/Green slice nodes, 3D view 1), and each slice view's vtkMRMLSliceLogic creates the
composite node of its slice node (found by layout name). A scene saved with them opens in Slicer with
its layers (singleton view nodes of an imported scene update the application's), and a viewer built on
slicer-core (trame-slicer's SliceView: vtkMRMLSliceLogic.AddSliceNode("Red")) finds the composite node by
the same layout name and shows what was set."""
from __future__ import annotations

import contextlib

from COMPASSLib.mrml.scene import _nodes, _slicer, is_app_scene, module_logics

FOUR_UP = 3            # vtkMRMLLayoutNode.SlicerLayoutFourUpView: three slice views and the 3D view
_FIT_SIZE = (256, 256)  # slice node default dimensions: the view size the fit assumes without a window


def slice_composites(scene) -> list:
    return _nodes(scene, "vtkMRMLSliceCompositeNode")


def ensure_slice_views(scene, arrangement: int = FOUR_UP) -> list:
    """The scene's slice composite nodes; where a scene has no views (slicer-core, or a batch run's own
    scene inside Slicer; the application's scene always has its layout's), first the application's:
    layout node (with `arrangement`), slice and 3D view nodes, composite nodes."""
    slicer = _slicer()
    if not is_app_scene(scene) and not slice_composites(scene):
        layout = slicer.vtkMRMLLayoutLogic()
        layout.SetMRMLScene(scene)
        try:
            layout.GetLayoutNode().SetViewArrangement(arrangement)   # makes the layout's missing views
        finally:
            layout.SetMRMLScene(None)
        with _slice_logics(scene):   # each makes the composite node of its slice node
            pass
    return slice_composites(scene)


@contextlib.contextmanager
def _slice_logics(scene):
    """A vtkMRMLSliceLogic per slice node, for the duration of the block (on slicer-core, where no view
    holds one). Their slice-plane model nodes are removed afterwards: each viewer makes its own."""
    slicer = _slicer()
    app_logic = module_logics(scene)["application"]
    logics = []
    try:
        for slice_node in _nodes(scene, "vtkMRMLSliceNode"):
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLApplicationLogic(app_logic)
            logic.SetMRMLScene(scene)
            logic.SetSliceNode(slice_node)
            logics.append(logic)
        yield logics
    finally:
        for logic in logics:
            logic.DeleteSliceModel()
            logic.SetMRMLScene(None)


def set_layout(scene, arrangement: int = FOUR_UP) -> None:
    """The view arrangement of the scene's layout node, where it has one (the application's layout
    manager follows the node, and a saved scene carries it)."""
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is not None:
        layout.SetViewArrangement(arrangement)


def show_layers(scene, background=None, foreground=None, opacity: float | None = None, label=None,
                fit: bool = False) -> list:
    """Set the layers of every slice view (nodes left None stay as they are); `fit` centres and zooms
    the views on the background. Returns the composite nodes (none on slicer-core without views)."""
    composites = slice_composites(scene)
    for composite in composites:
        if background is not None:
            composite.SetBackgroundVolumeID(background.GetID())
        if foreground is not None:
            composite.SetForegroundVolumeID(foreground.GetID())
        if opacity is not None:
            composite.SetForegroundOpacity(opacity)
        if label is not None:
            composite.SetLabelVolumeID(label.GetID())
    if fit and composites:
        fit_slice_views(scene)
    return composites


def fit_slice_views(scene) -> None:
    """Centre and zoom every slice view on its background volume."""
    if is_app_scene(scene):
        _slicer().util.resetSliceViews()   # the views' own logics, at the views' sizes
        return
    with _slice_logics(scene) as logics:
        for logic in logics:
            logic.FitSliceToBackground(*_FIT_SIZE)


def show_sequence_browser(browser) -> None:
    """Show the browser in the application's sequence toolbar. (A browser node has no property for
    it: the Sequences module shows the browsers of a scene it imports, so a saved .mrb opened in Slicer
    shows its toolbar; nothing to do on slicer-core.)"""
    if is_app_scene(browser.GetScene()):
        _slicer().modules.sequences.showSequenceBrowser(browser)
