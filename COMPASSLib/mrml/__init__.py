"""The MRML bridge: puts COMPASS images and results into a 3D Slicer scene.

Everything the Slicer module does with the scene lives in this package, so it runs the same in the full
application, in `Slicer --no-main-window` batch mode and under plain Python with the `slicer-core`
wheel (real MRML, no Qt, no `slicer.app`). `slicer` is imported lazily: importing COMPASSLib never
needs Slicer.

Geometry: COMPASSLib images are SimpleITK images in LPS (DICOM patient coordinates); Slicer's world is
RAS. The one conversion in the project is here (`coordinates`): RAS = diag(-1, -1, 1) * LPS, applied to
the direction cosines and the origin; voxel order and spacing are unchanged.

Long functions take `progress` (COMPASSLib.progress: `progress(fraction_done, message)`, False cancels).

Modules, each importing only those above it:
    scene        the lazy `slicer` import, module logics per scene, new/release/current scene, node lookup
    bundle       save and load the scene as a Medical Reality Bundle (.mrb), as Slicer's writer/reader do
    coordinates  LPS <-> RAS geometry of images and volume nodes
    nodes        volume, segmentation (with 3D surfaces) and Sequence nodes browsed through proxies, their
                 display, organ colours, COMPASS.* node attributes
    hierarchy    subject hierarchy: Patient / Course (study) / Fraction k, placing nodes
    slicerrt     what SlicerRT reads: the dose-volume attribute, the dose unit on the study item
    views        slice views (made as the application makes them where a scene has none), layers, layout
    risk         risk.csv as a table node and a plot chart of risk over fractions
    patient      a patient's fraction Sequences, BED/EQD2 maps, the views showing them, provenance node,
                 `load_patient`
    texture      dose-texture overlays (colour table, legend, unit, slice-view foreground)
    dicom_scene  series loaded through Slicer's DICOM module (SlicerRT) found by study -> a cohort manifest
    whatif       a what-if projection (twin.whatif) as table, chart (delivered solid, projected dashed) and
                 the projected cumulative BED volume
    render       offscreen PNG renders of slice and 3D views with slicer-core's view code (EGL; docs/view.md),
                 imported on its own: `from COMPASSLib.mrml import render`
The names below are the public API (`from COMPASSLib import mrml; mrml.load_patient(...)`).
"""
from __future__ import annotations

from COMPASSLib.mrml.bundle import load_scene, save_scene
from COMPASSLib.mrml.coordinates import LPS_TO_RAS, ijk_to_ras, node_ijk_to_ras, volume_to_image
from COMPASSLib.mrml.dicom_scene import patient_studies, scene_cohort, scene_patients
from COMPASSLib.mrml.nodes import (ATTRIBUTE_PREFIX, ORGAN_COLOURS, add_segmentation, add_sequence, add_volume,
                                   dose_colour_table, organ_colour, segment_array)
from COMPASSLib.mrml.patient import (MODALITIES, PatientNodes, add_dose_maps, add_fraction_series, add_provenance,
                                     load_patient, read_fractions, show_patient)
from COMPASSLib.mrml.risk import RISK_COLUMNS, add_risk_plot, add_risk_table, read_risk, show_plot
from COMPASSLib.mrml.scene import get_scene, has_app, module_logics, new_scene, nodes_by_class, release_scene
from COMPASSLib.mrml.slicerrt import (DOSE_UNIT_NAME_ATTRIBUTE, DOSE_UNIT_VALUE_ATTRIBUTE, DOSE_VOLUME_ATTRIBUTE,
                                      dose_unit)
from COMPASSLib.mrml.texture import (add_texture_files, add_texture_maps, add_texture_overlay, show_overlay,
                                     texture_colour_table, texture_unit)
from COMPASSLib.mrml.views import ensure_slice_views, show_layers
from COMPASSLib.mrml.whatif import WhatIfNodes, add_whatif, remove_whatif
from COMPASSLib.progress import Cancelled, report, scaled

__all__ = [
    "ATTRIBUTE_PREFIX", "Cancelled", "DOSE_UNIT_NAME_ATTRIBUTE", "DOSE_UNIT_VALUE_ATTRIBUTE",
    "DOSE_VOLUME_ATTRIBUTE", "LPS_TO_RAS", "MODALITIES", "ORGAN_COLOURS", "PatientNodes", "RISK_COLUMNS", "WhatIfNodes",
    "add_dose_maps", "add_fraction_series", "add_provenance", "add_risk_plot", "add_risk_table",
    "add_segmentation", "add_sequence", "add_texture_files", "add_texture_maps", "add_texture_overlay",
    "add_volume", "add_whatif", "dose_colour_table", "dose_unit", "ensure_slice_views", "get_scene", "has_app",
    "ijk_to_ras", "load_patient",
    "load_scene", "module_logics", "new_scene", "node_ijk_to_ras", "nodes_by_class", "organ_colour",
    "patient_studies", "read_fractions", "read_risk", "release_scene", "remove_whatif", "report", "save_scene", "scaled",
    "scene_cohort", "scene_patients", "segment_array", "show_layers", "show_overlay", "show_patient",
    "show_plot", "texture_colour_table", "texture_unit", "volume_to_image",
]
