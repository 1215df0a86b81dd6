"""Dose-texture maps as colour overlays: the "COMPASS texture" colour table, overlays with a colour
legend over a CT, maps computed from a patient in the scene or read from `compass run --texture-maps`
files, and setting the slice views' foreground. Overlays are SlicerRT dose volumes in the unit of their
feature (a study per unit under the patient, slicerrt.unit_study), so its DVH and Isodose take them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from COMPASSLib.errors import InputError
from COMPASSLib.mrml.coordinates import _array, volume_to_image
from COMPASSLib.mrml.hierarchy import patient_item, place
from COMPASSLib.mrml.nodes import ATTRIBUTE_PREFIX, _style_volume, add_volume, colour_table, segment_array
from COMPASSLib.mrml.patient import PatientNodes
from COMPASSLib.mrml.scene import get_scene, module_logics
from COMPASSLib.mrml.slicerrt import GRAY, mark_dose_volume, unit_study
from COMPASSLib.mrml.views import show_layers
from COMPASSLib.progress import report, scaled

_TEXTURE_COLOURS = ((0.0, (0.0, 0.0, 0.02)), (0.25, (0.34, 0.06, 0.43)), (0.5, (0.73, 0.21, 0.33)),
                    (0.75, (0.98, 0.55, 0.04)), (1.0, (0.99, 1.0, 0.64)))  # dark-to-bright, inferno-like
# The unit of a map of the cumulative BED (Gy), as pyradiomics defines the feature: first-order
# intensities in Gy, Energy and Variance in Gy^2, TotalEnergy Energy x voxel volume; Entropy,
# Uniformity, Skewness, Kurtosis and every GLCM feature (computed on the grey-level bins) have none.
_FIRSTORDER_GY = {"Minimum", "10Percentile", "90Percentile", "Maximum", "Mean", "Median", "InterquartileRange",
                  "Range", "MeanAbsoluteDeviation", "RobustMeanAbsoluteDeviation", "RootMeanSquared"}
_FIRSTORDER_OTHER = {"Energy": f"{GRAY}^2", "Variance": f"{GRAY}^2", "TotalEnergy": f"{GRAY}^2*mm^3"}
TEXTURE_STUDY = "texture maps"


def texture_unit(feature: str) -> str | None:
    """The unit of a texture map of the BED ('firstorder:Mean' -> 'GY'), None where it has none."""
    kind, _, name = feature.partition(":")
    if kind != "firstorder":
        return None
    return GRAY if name in _FIRSTORDER_GY else _FIRSTORDER_OTHER.get(name)


def _feature_of_file(name: str) -> str | None:
    """'Heart_glcm_Contrast.nrrd' (compass run --texture-maps) -> 'glcm:Contrast' (organs may hold '_')."""
    stem = name[:-5] if name.endswith(".nrrd") else name
    for kind in ("firstorder", "glcm"):
        head, sep, tail = stem.rpartition(f"_{kind}_")
        if sep and head:
            return f"{kind}:{tail}"
        if stem.startswith(f"{kind}_"):
            return f"{kind}:{stem[len(kind) + 1:]}"
    return None


def _place_overlay(scene, node, patient_id: str, feature: str | None) -> None:
    """Under the patient's study of the map's unit, where SlicerRT reads that unit."""
    unit = texture_unit(feature) if feature else None
    node.SetAttribute(ATTRIBUTE_PREFIX + "unit", unit or "")
    place(scene, node, unit_study(scene, patient_item(scene, patient_id), f"{patient_id} {TEXTURE_STUDY}", unit))


def texture_colour_table(scene=None):
    """The colour table of texture overlays (dark to bright; colour 0 transparent so the CT shows)."""
    xs = [p for p, _ in _TEXTURE_COLOURS]

    def rgba(t):
        rgb = [float(np.interp(t, xs, [c[j] for _, c in _TEXTURE_COLOURS])) for j in range(3)]
        return (*rgb, 0.0 if t == 0 else 1.0)

    return colour_table(get_scene(scene), "COMPASS texture", rgba)


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
    mark_dose_volume(node)   # SlicerRT's DVH/Isodose take it; its unit is on its study (_place_overlay)
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
    # the fraction doses as the scene holds them (Sequence items, or the kept fraction nodes)
    dose_nodes = [patient.node(scene, "dose", k) for k in delivered]
    if fraction not in patient.fractions or any(n is None for n in dose_nodes):
        raise InputError(f"no dose volumes up to fraction {fraction} in the scene: load the patient's fractions",
                         patient=patient.patient, fraction=fraction)
    doses = [volume_to_image(n) for n in dose_nodes]
    bed = sitk.GetImageFromArray(cumulative_organ_bed(doses, organ, fs.alpha_beta))
    bed.CopyInformation(doses[-1])
    # The organ's voxels and the background from scene nodes showing this fraction (the proxies with the
    # browser moved to it: the overlay lies over its own fraction's CT). A fraction without contours
    # takes those of the first fraction that has them.
    seg_fraction = fraction if patient.node(scene, "segmentation", fraction) is not None else \
        next((k for k in patient.fractions if patient.node(scene, "segmentation", k) is not None), None)
    if seg_fraction is None:
        raise InputError("no organ segmentation in the scene", patient=patient.patient, fraction=fraction)
    seg = patient.shown_node(scene, "segmentation", seg_fraction)
    # every fraction lies on the patient's one reference grid (ingest): any fraction's dose gives it
    mask = sitk.GetImageFromArray(segment_array(seg, organ, patient.shown_node(scene, "dose", seg_fraction)))
    mask.CopyInformation(bed)
    background = patient.shown_node(scene, "ct", fraction) or patient.shown_node(scene, "dose", fraction)
    report(progress, 0.0, f"texture maps of {organ}, fraction {fraction}")
    maps = texture_maps(bed, mask, features, radius=radius, bin_width=bin_width_gy, device=device,
                        progress=scaled(progress, 0.0, 0.9))
    nodes = []
    for name, image in maps.items():
        node = add_texture_overlay(image, f"{patient.patient} F{fraction} {organ} {name} (BED, r={radius})",
                                   background, scene, reference=bed,
                                   attributes={"patient": patient.patient, "fraction": fraction, "organ": organ,
                                               "feature": name, "radius_voxels": radius, "bin_width_gy": bin_width_gy})
        _place_overlay(scene, node, patient.patient, name)
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
    nodes = []
    for name in doc.get("outputs", []):
        feature = _feature_of_file(name)
        node = add_texture_overlay(sitk.ReadImage(str(folder / name)), f"{patient_id} F{fraction} {name[:-5]} (BED)",
                                   background_node, scene,
                                   attributes={"patient": patient_id, "fraction": fraction, "file": name,
                                               "feature": feature, "radius_voxels": texture.get("radius"),
                                               "bin_width_gy": texture.get("bin_width_gy")})
        _place_overlay(scene, node, patient_id, feature)
        nodes.append(node)
    return nodes


def show_overlay(foreground_node, background_node=None, scene=None, opacity: float = 0.6) -> None:
    """Set foreground (and background) of every slice view of the scene (none exist on a slicer-core
    scene without views)."""
    show_layers(get_scene(scene), background_node, foreground_node, opacity)
