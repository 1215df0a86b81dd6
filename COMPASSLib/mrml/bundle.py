"""Scene files: save a scene as, and read it back from, a Medical Reality Bundle (.mrb)."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.mrml.scene import get_scene, module_logics, new_scene


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
