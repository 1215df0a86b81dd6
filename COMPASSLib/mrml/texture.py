"""Dose-texture maps as colour overlays: the "COMPASS texture" colour table, overlays with a colour
legend over a CT, maps computed from a patient in the scene or read from `compass run --texture-maps`
files, and setting the slice views' foreground."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from COMPASSLib.errors import InputError
from COMPASSLib.mrml.coordinates import _array, volume_to_image
from COMPASSLib.mrml.nodes import _style_volume, add_volume, segment_array
from COMPASSLib.mrml.patient import PatientNodes, _place
from COMPASSLib.mrml.scene import _nodes, get_scene, module_logics
from COMPASSLib.progress import report, scaled

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
