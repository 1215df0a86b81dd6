"""The scene and its module logics: the lazy `slicer` import, new/release/current scene, and finding
nodes. Works the same in the application and on slicer-core (real MRML, no Qt, no `slicer.app`), where
the Segmentations, Sequences and Colors logics are created here, once per scene."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from COMPASSLib.errors import CompassError


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


def is_app_scene(scene) -> bool:
    """True for the application's own scene (slicer.mrmlScene in Slicer): its module logics, views and
    toolbars exist already. Other scenes (slicer-core, or a batch run's scenes inside Slicer) get them here."""
    slicer = _slicer()
    return has_app() and scene is getattr(slicer, "mrmlScene", None)


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
    if is_app_scene(scene):
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
    import atexit
    import shutil

    home = Path(tempfile.mkdtemp(prefix="compass-mrml-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)   # nothing left in the temp folder at exit
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


def _nodes(scene, cls) -> list:
    collection = scene.GetNodesByClass(cls)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def nodes_by_class(scene, cls) -> list:
    """Nodes of a class (subclasses included), e.g. for tests and summaries."""
    return _nodes(get_scene(scene), cls)
