"""Scene files: save a scene as, and read it back from, a Medical Reality Bundle (.mrb), leaving the scene
as Slicer's own .mrb writer and reader leave it."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.mrml.scene import _slicer, get_scene, module_logics, new_scene


def save_scene(path, scene=None) -> Path:
    """Save the scene as a Medical Reality Bundle (.mrb: the .mrml plus every node's data), atomically.

    Writes what Slicer's scene writer writes (qSlicerSceneWriter::writeToMRB: the scene's data-bundle
    writer, then zip; no `slicer.app` needed, so batch runs on slicer-core write the same files) and
    leaves the scene as it does: its URL the .mrb (the next save goes there by default), storage file
    names as they were, and every storable node marked modified since read. The writer reset that mark
    while writing into the bundle's temporary folder; left so, a later "save as .mrml + data" would
    skip all nodes (they read as saved) and the scene would point at files that were never written.
    The path is used as given (a relative one is relative to the working directory).
    """
    from COMPASSLib.atomic import atomic_path

    path = Path(path)
    if path.suffix.lower() != ".mrb":
        raise InputError("scene file must end in .mrb", file=path)
    scene = get_scene(scene)
    app_logic = module_logics(scene)["application"]
    work = Path(tempfile.mkdtemp(prefix="compass-mrb-"))
    bundle = work / path.stem   # the folder name becomes the .mrml name inside the bundle
    bundle.mkdir()
    url, root = scene.GetURL() or "", scene.GetRootDirectory() or ""
    target = path.absolute()
    # Slicer's writer points the scene at the .mrb before writing; the bundle writer puts it back there.
    scene.SetURL(str(target))
    scene.SetRootDirectory(str(target.parent))
    try:
        if not app_logic.SaveSceneToSlicerDataBundleDirectory(str(bundle), None):
            raise CompassError("could not write the scene bundle", file=path)
        with atomic_path(path) as tmp:
            if not app_logic.Zip(str(tmp), str(bundle)):
                raise CompassError("could not zip the scene bundle", file=path)
    except BaseException:
        scene.SetURL(url)
        scene.SetRootDirectory(root)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scene.SetStorableNodesModifiedSinceRead()
    return path


def load_scene(path, scene=None):
    """Read an .mrb into `scene` (a new scene when None; the scene is returned), as Slicer's scene
    reader does (vtkMRMLScene::ReadFromMRB): unpacked into the scene's cache folder, which it removes
    afterwards, with the scene's URL and the storage file names moved from that folder to the .mrb's
    (relative names), and every storable node marked modified since read (its data lives only in
    memory until saved again)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("scene file not found", file=path)
    scene = scene if scene is not None else new_scene()
    module_logics(scene)   # on slicer-core: the data IO manager whose cache folder the reader unpacks into
    messages = _slicer().vtkMRMLMessageCollection()
    if not scene.ReadFromMRB(str(path.absolute()), False, messages):
        detail = messages.GetAllMessagesAsString().strip().splitlines()
        raise InputError("not a readable Slicer scene bundle (.mrb)" + (f": {detail[0]}" if detail else ""),
                         file=path)
    return scene
