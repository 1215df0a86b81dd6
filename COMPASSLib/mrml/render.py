"""Offscreen renders of a COMPASS scene with Slicer's own view code: slice views (vtkMRMLSliceLogic's
reslice and layer blend of the composite node's background and foreground, plus the slice displayable
managers that draw segment outlines and the colour legend) and a 3D view (the 3D displayable managers
that draw segment surfaces), each in an offscreen VTK render window, read back as PNG.

Why not trame-slicer's SliceView/ThreeDView: trame-slicer 2.0.0 imports `vtkMRMLLayerDisplayableManager`
from `slicer-layer-dm`, whose only release is built against slicer-core 5.11.0.*; the project pins
slicer-core 5.13 (the Slicer framework files the module tests run against need it). The classes below
make the same slicer-core objects trame-slicer's views make, without that layer manager (docs/view.md).

Headless: without a display VTK opens an EGL context (Mesa's llvmpipe; Debian `libegl1 libegl-mesa0
libgl1-mesa-dri`); `offscreen()` selects it before the first render window is made, so no X server is
tried. Volume rendering is never switched on here (seconds per frame in software).

Scenes come from `open_patient`: an existing scene, a saved .mrb, or an output folder (its
scenes/<patient>.mrb, else the scene `load_patient` builds from the cohort and OUT/risk.csv): the one
scene code path of the Slicer module and batch mode.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.mrml.nodes import ATTRIBUTE_PREFIX, segment_array
from COMPASSLib.mrml.scene import _nodes, _slicer, module_logics

SLICE_VIEWS = {"axial": "Red", "sagittal": "Yellow", "coronal": "Green"}   # Slicer's layout names
THREED_VIEW = "1"                                                          # the 3D view's singleton tag
OVERLAYS = ("bed", "eqd2", "dose", "pet", "texture")
BACKGROUND_3D = (0.12, 0.12, 0.13)


def offscreen() -> None:
    """Choose VTK's EGL window where there is no X display (must happen before VTK makes a window)."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


# --- the patient in a scene ------------------------------------------------------------------------
@dataclass
class ScenePatient:
    """A patient's nodes found in a scene by their COMPASS.* attributes (a scene read from .mrb has no
    PatientNodes object): the fraction browser and, per modality, the Sequence and its proxy."""
    scene: object
    patient: str
    browser: object = None
    sequences: dict = field(default_factory=dict)   # modality -> sequence node

    @classmethod
    def find(cls, scene, patient: str | None = None) -> "ScenePatient":
        seqs = [s for s in _nodes(scene, "vtkMRMLSequenceNode") if s.GetAttribute(ATTRIBUTE_PREFIX + "patient")]
        ids = sorted({s.GetAttribute(ATTRIBUTE_PREFIX + "patient") for s in seqs})
        if patient is None:
            if len(ids) != 1:
                raise InputError(f"the scene holds patients {ids}: say which one")
            patient = ids[0]
        if patient not in ids:
            raise InputError(f"the scene holds no COMPASS series of patient {patient} (it has {ids})",
                             patient=patient)
        out = cls(scene, patient)
        for s in seqs:
            if s.GetAttribute(ATTRIBUTE_PREFIX + "patient") == patient:
                out.sequences[s.GetAttribute(ATTRIBUTE_PREFIX + "modality")] = s
        for browser in _nodes(scene, "vtkMRMLSequenceBrowserNode"):
            if any(browser.IsSynchronizedSequenceNode(s, True) for s in out.sequences.values()):
                out.browser = browser
                break
        return out

    @property
    def fractions(self) -> list:
        master = self.browser.GetMasterSequenceNode()
        return [int(float(master.GetNthIndexValue(i))) for i in range(master.GetNumberOfDataNodes())]

    @property
    def fraction(self) -> int:
        return self.fractions[self.browser.GetSelectedItemNumber()]

    def show_fraction(self, fraction: int) -> None:
        if fraction not in self.fractions:
            raise InputError(f"no fraction {fraction} (fractions {self.fractions})", patient=self.patient,
                             fraction=fraction)
        self.browser.SetSelectedItemByIndexValue(str(fraction))

    def proxy(self, modality: str):
        seq = self.sequences.get(modality)
        return self.browser.GetProxyNode(seq) if seq is not None and self.browser is not None else None

    def overlay(self, kind: str, organ: str | None = None):
        """The foreground node of an overlay kind: a series' proxy, or a texture overlay of the organ
        at the shown fraction (mrml.texture), None where the scene has none."""
        if kind not in OVERLAYS:
            raise InputError(f"overlay must be one of {', '.join(OVERLAYS)}, got {kind!r}")
        if kind != "texture":
            return self.proxy(kind)
        for node in _nodes(self.scene, "vtkMRMLScalarVolumeNode"):
            a = lambda k: node.GetAttribute(ATTRIBUTE_PREFIX + k)   # noqa: E731
            of_organ = organ is None or a("organ") == organ or (a("file") or "").startswith(f"{organ}_")
            if a("modality") == "texture" and a("patient") == self.patient and of_organ and \
                    a("fraction") == str(self.fraction):
                return node
        return None

    def organs(self) -> list:
        seg = self.proxy("segmentation")
        s = seg.GetSegmentation() if seg is not None else None
        return [s.GetSegment(s.GetNthSegmentID(i)).GetName() for i in range(s.GetNumberOfSegments())] if s else []

    def organ_mask(self, organ: str) -> np.ndarray:
        """The organ's voxels (k, j, i) on the CT proxy's grid at the shown fraction."""
        seg = self.proxy("segmentation")
        if seg is None:
            raise InputError("the scene has no organ segmentation", patient=self.patient)
        return segment_array(seg, organ, self.proxy("ct") or self.proxy("dose"))

    def organ_centre_ras(self, organ: str) -> np.ndarray:
        mask = self.organ_mask(organ)
        if not mask.any():
            raise InputError(f"organ {organ} is empty", patient=self.patient, fraction=self.fraction)
        kji = np.argwhere(mask).mean(axis=0)
        return voxel_to_ras(self.proxy("ct") or self.proxy("dose"), kji[::-1])


def voxel_to_ras(volume, ijk) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    return np.array(m.MultiplyPoint((*map(float, ijk), 1.0))[:3])


def open_patient(source, patient: str | None = None, cohort=None, scene=None) -> ScenePatient:
    """A patient's scene from a scene, an .mrb, or an output folder (OUT/scenes/<patient>.mrb, else
    built by `load_patient` from `cohort` and OUT/risk.csv). With `scene`, files are read into it."""
    from COMPASSLib.mrml.bundle import load_scene
    from COMPASSLib.mrml.patient import load_patient
    from COMPASSLib.mrml.scene import new_scene

    if hasattr(source, "GetNodesByClass"):
        return ScenePatient.find(source, patient)
    source = Path(source)
    if source.is_dir():
        scenes = source / "scenes"
        mrbs = sorted(scenes.glob("*.mrb")) if scenes.is_dir() else []
        if patient is None and len(mrbs) == 1:
            patient = mrbs[0].stem
        if patient is not None and (scenes / f"{patient}.mrb").is_file():
            source = scenes / f"{patient}.mrb"
        else:
            if cohort is None:
                raise InputError("the folder has no saved scene of the patient (scenes/<patient>.mrb): give "
                                 "the cohort to build it from", file=source, patient=patient)
            if patient is None:
                raise InputError("say which patient to show", file=source)
            risk = source / "risk.csv"
            scene = scene if scene is not None else new_scene()
            load_patient(cohort, patient, scene, risk=risk if risk.is_file() else None)
            return ScenePatient.find(scene, patient)
    scene = load_scene(source, scene)
    return ScenePatient.find(scene, patient)


# --- views -----------------------------------------------------------------------------------------
def _ensure_interaction_nodes(scene) -> None:
    """The singleton interaction and selection nodes the application's scene always has: displayable
    managers are not created in a scene without an interaction node (no outlines in slice views)."""
    slicer = _slicer()
    for cls in ("vtkMRMLInteractionNode", "vtkMRMLSelectionNode"):
        if scene.GetFirstNodeByClass(cls) is None:
            node = getattr(slicer, cls)()
            node.SetSingletonTag("Singleton")
            scene.AddNode(node)


def _view_node(scene, cls: str, layout_name: str, name: str | None = None):
    """The scene's view node of that class and layout name (the application's singleton), made and added
    as the application makes it where the scene has none."""
    node = next((n for n in _nodes(scene, cls) if n.GetLayoutName() == layout_name), None)
    if node is None:
        node = getattr(_slicer(), cls)()
        if name:
            node.SetName(name)
        node.SetLayoutName(layout_name)
        node.SetSingletonTag(layout_name)
        node = scene.AddNode(node)
    return node


class _View:
    """An offscreen render window with a renderer, an interactor and a displayable manager group."""

    def __init__(self, scene, factory_class, managers, size):
        import vtk

        slicer = _slicer()
        offscreen()
        self.scene = scene
        self.app_logic = module_logics(scene)["application"]
        _ensure_interaction_nodes(scene)
        if self.app_logic.GetSliceLogics() is None:
            self.app_logic.SetSliceLogics(vtk.vtkCollection())
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetMultiSamples(0)   # identical pixels across runs; outlines stay crisp
        self.renderer = vtk.vtkRenderer()
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()
        factory = getattr(slicer, factory_class).GetInstance()
        factory.SetMRMLApplicationLogic(self.app_logic)
        for name in managers:
            if not factory.IsDisplayableManagerRegistered(name):
                factory.RegisterDisplayableManager(name)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)
        self.set_size(size)

    def set_size(self, size) -> None:
        self.window.SetSize(int(size[0]), int(size[1]))
        self.interactor.UpdateSize(int(size[0]), int(size[1]))

    @property
    def size(self) -> tuple:
        return tuple(self.window.GetSize())

    def rgb(self) -> np.ndarray:
        """The rendered image (rows top to bottom, RGB uint8)."""
        import vtk
        from vtk.util import numpy_support

        self.render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        image = grab.GetOutput()
        w, h, _ = image.GetDimensions()
        arr = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)
        return np.ascontiguousarray(arr[::-1, :, :3])

    def png(self) -> bytes:
        return png_bytes(self.rgb())

    def render(self) -> None:
        self.window.Render()


class SliceView(_View):
    """A slice view (Red/Yellow/Green) of the scene, as Slicer's qMRMLSliceWidget builds it on MRML."""

    MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLModelSliceDisplayableManager",
                "vtkMRMLColorLegendDisplayableManager", "vtkMRMLScalarBarDisplayableManager")

    def __init__(self, scene, layout_name: str = "Red", size=(512, 512)):
        import vtk

        slicer = _slicer()
        self.logic = slicer.vtkMRMLSliceLogic()
        super().__init__(scene, "vtkMRMLSliceViewDisplayableManagerFactory", self.MANAGERS, size)
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.logic.SetMRMLApplicationLogic(self.app_logic)
        self.logic.SetMRMLScene(scene)
        self.app_logic.GetSliceLogics().AddItem(self.logic)
        self.node = self._scene_slice_node(scene, layout_name)
        self.logic.SetSliceNode(self.node)
        # the blended slice image, drawn as Slicer's light-box renderer manager draws it
        self.mapper = vtk.vtkImageMapper()
        self.mapper.SetColorWindow(255)
        self.mapper.SetColorLevel(127.5)
        self.image_actor = vtk.vtkActor2D()
        self.image_actor.SetMapper(self.mapper)
        self.image_actor.GetProperty().SetDisplayLocationToBackground()
        self.renderer.AddViewProp(self.image_actor)
        self.managers.SetMRMLDisplayableNode(self.node)
        self.set_size(size)

    @staticmethod
    def _scene_slice_node(scene, layout_name: str):
        """The scene's slice node of the layout (Red, ...), added where it has none. Not
        vtkMRMLSliceLogic.AddSliceNode: on slicer-core 5.13 it returns a node outside the scene when the
        scene already has one, and displayable managers of a node outside the scene find no interaction
        node and draw nothing (no segment outlines)."""
        return _view_node(scene, "vtkMRMLSliceNode", layout_name, name=layout_name)

    def set_size(self, size) -> None:
        super().set_size(size)
        if getattr(self, "node", None) is not None:
            self.logic.ResizeSliceNode(int(size[0]), int(size[1]))

    def render(self) -> None:
        # The layer logics do not hear of slice-node changes made after they were set up here (in the
        # application the slice widget's event loop brings them): bring their reslice to the node.
        for layer in (self.logic.GetBackgroundLayer(), self.logic.GetForegroundLayer(), self.logic.GetLabelLayer()):
            if layer is not None:
                layer.UpdateTransforms()
        # the logic replaces its blend output when layers change: take the current one each time
        self.mapper.SetInputConnection(self.logic.GetImageDataConnection())
        super().render()

    @property
    def composite(self):
        return self.logic.GetSliceCompositeNode()

    def fit(self) -> None:
        self.logic.FitSliceToBackground(*self.size)
        self.logic.SnapSliceOffsetToIJK()

    def set_offset(self, offset_mm: float) -> None:
        self.logic.SetSliceOffset(float(offset_mm))

    @property
    def offset(self) -> float:
        return self.logic.GetSliceOffset()

    def jump_to(self, ras) -> None:
        """Move the slice through a point (view centre and zoom kept)."""
        self.node.JumpSliceByOffsetting(*map(float, ras))

    def scroll(self, steps: int) -> None:
        """Move the slice by whole voxels of the background, as the mouse wheel does in Slicer."""
        from vtk import reference

        bounds, step = [0.0, 0.0], reference(1.0)
        self.logic.GetSliceOffsetRangeResolution(bounds, step)
        self.set_offset(min(max(self.offset + steps * step.get(), bounds[0]), bounds[1]))

    def ras_to_pixel(self, ras) -> np.ndarray:
        """Points (n, 3) RAS -> (n, 2) pixel (column, row from the top) of this view."""
        import vtk

        m = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Invert(self.node.GetXYToRAS(), m)
        ras = np.atleast_2d(np.asarray(ras, dtype=float))
        xy = np.array([m.MultiplyPoint((*p, 1.0))[:2] for p in ras])
        return np.column_stack([xy[:, 0], self.size[1] - 1 - xy[:, 1]])


class ThreeDView(_View):
    """The 3D view (node "1") with segment surfaces and models; volume rendering stays off."""

    MANAGERS = ("vtkMRMLSegmentationsDisplayableManager3D", "vtkMRMLModelDisplayableManager")

    def __init__(self, scene, size=(512, 512)):
        super().__init__(scene, "vtkMRMLThreeDViewDisplayableManagerFactory", self.MANAGERS, size)
        self.node = _view_node(scene, "vtkMRMLViewNode", THREED_VIEW)
        self.renderer.SetBackground(*BACKGROUND_3D)
        self.managers.SetMRMLDisplayableNode(self.node)

    def look_from_front(self) -> None:
        """The camera in front of the patient (anterior, +A), head up, showing every surface."""
        self.render()
        self.renderer.ResetCamera()
        camera = self.renderer.GetActiveCamera()
        focal = np.array(camera.GetFocalPoint())
        distance = camera.GetDistance()
        camera.SetPosition(*(focal + [0.0, distance, 0.0]))
        camera.SetViewUp(0.0, 0.0, 1.0)
        self.renderer.ResetCamera()
        self.renderer.ResetCameraClippingRange()


class PatientViews:
    """The three slice views and the 3D view over one patient's scene."""

    def __init__(self, patient: ScenePatient, size=(512, 512), threed: bool = True):
        self.patient = patient
        self.slices = {name: SliceView(patient.scene, layout, size) for name, layout in SLICE_VIEWS.items()}
        for name, view in self.slices.items():
            view.node.SetOrientation(name.capitalize())
            view.fit()
        self.threed = ThreeDView(patient.scene, size) if threed else None
        if self.threed is not None:
            self.threed.look_from_front()

    def show_overlay(self, kind: str = "bed", organ: str | None = None) -> None:
        """Every slice view: the CT behind, the overlay in front (the scene's opacity kept)."""
        node = self.patient.overlay(kind, organ)
        if node is None:
            raise InputError(f"the scene has no {kind} overlay" + (f" of {organ}" if organ else ""),
                             patient=self.patient.patient, fraction=self.patient.fraction)
        for view in self.slices.values():
            view.composite.SetForegroundVolumeID(node.GetID())
            if view.composite.GetForegroundOpacity() <= 0:
                view.composite.SetForegroundOpacity(0.5)

    def through(self, organ: str) -> np.ndarray:
        """Every slice view through the organ's centre (RAS returned)."""
        centre = self.patient.organ_centre_ras(organ)
        for view in self.slices.values():
            view.jump_to(centre)
        return centre


# --- what the report embeds --------------------------------------------------------------------------
def png_bytes(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def render_organ_slices(source, patient: str | None, organ: str, fraction: int | None = None,
                        overlay: str = "bed", size=(512, 512), views=("axial", "coronal"), out_dir=None,
                        cohort=None) -> list:
    """PNGs of the slice views through an organ's centre at a fraction (default: the latest) with the
    CT behind and `overlay` (bed, eqd2, dose, pet, texture) in front, rendered by Slicer's slice views.
    `source`: a scene, an .mrb or an output folder (open_patient). Returns PNG bytes per view, or with
    `out_dir` the paths written there (<patient>_<organ>_<overlay>_fx<k>_<view>.png, atomically)."""
    from COMPASSLib.atomic import atomic_path, safe_filename

    found = open_patient(source, patient, cohort)
    if organ not in found.organs():
        raise InputError(f"patient has no organ {organ} (organs {found.organs()})", patient=found.patient)
    found.show_fraction(fraction if fraction is not None else found.fractions[-1])
    pv = PatientViews(found, size, threed=False)
    pv.show_overlay(overlay, organ)
    pv.through(organ)
    pngs = [pv.slices[v].png() for v in views]
    if out_dir is None:
        return pngs
    paths = []
    for v, data in zip(views, pngs):
        name = safe_filename(f"{found.patient}_{organ}_{overlay}_fx{found.fraction}_{v}") + ".png"
        path = Path(out_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
        paths.append(path)
    return paths


def report_renders(out_dir, patient: str, organs, cohort=None, size=(384, 384)) -> list:
    """[(organ, caption, PNG bytes)] for the report: per organ, the axial and coronal slices through its
    centre at the latest fraction with the cumulative BED, and with its texture map where `compass run
    --texture-maps` wrote one (OUT/texture/<patient>/fx<k>/). One scene per patient: OUT/scenes/<patient>.mrb,
    else built from `cohort` (or the cohort path that OUT/metrics.json records under "cohort")."""
    from COMPASSLib.atomic import read_json, safe_filename
    from COMPASSLib.mrml.texture import add_texture_files

    out_dir = Path(out_dir)
    if cohort is None and (out_dir / "metrics.json").is_file():
        cohort = read_json(out_dir / "metrics.json", "run metrics").get("cohort")
    found = open_patient(out_dir, patient, cohort)
    k = found.fractions[-1]
    found.show_fraction(k)
    pv = PatientViews(found, size, threed=False)
    textures = out_dir / "texture" / safe_filename(patient) / f"fx{k}" / "texture_maps.json"
    if textures.is_file():
        add_texture_files(out_dir, patient, k, found.scene, found.proxy("ct"))
    out = []
    for organ in organs:
        if organ not in found.organs():
            continue
        pv.through(organ)
        pv.show_overlay("bed")
        for v in ("axial", "coronal"):
            out.append((organ, f"{patient} {organ}: {v} slice through the organ centre, cumulative BED after "
                        f"fraction {k}", pv.slices[v].png()))
        node = found.overlay("texture", organ) if textures.is_file() else None
        if node is not None:
            pv.show_overlay("texture", organ)
            feature = node.GetAttribute(ATTRIBUTE_PREFIX + "feature") or "texture"
            for v in ("axial", "coronal"):
                out.append((organ, f"{patient} {organ}: {v} slice, BED texture map {feature} after fraction {k}",
                            pv.slices[v].png()))
    return out


def render_threed(source, patient: str | None = None, size=(512, 512), cohort=None) -> bytes:
    """PNG of the 3D view: the organ surfaces, seen from the front."""
    found = open_patient(source, patient, cohort)
    view = ThreeDView(found.scene, size)
    view.look_from_front()
    return view.png()


def check_rendering() -> None:
    """Raise CompassError naming what is missing where VTK cannot render offscreen here."""
    import vtk

    offscreen()
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(8, 8)
    try:
        window.Render()
        ok = bool(window.SupportsOpenGL())
    finally:
        window.Finalize()
    if not ok:
        raise CompassError("VTK cannot render offscreen: install Mesa's EGL/OpenGL (Debian: libegl1 "
                           "libegl-mesa0 libgl1-mesa-dri; `make system-deps`)")
