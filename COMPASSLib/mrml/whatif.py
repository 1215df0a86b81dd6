"""What if, in the scene: a projection of `twin.whatif.project` for one patient as a table node, a plot
chart (per organ and scenario: delivered fractions solid, projected fractions dashed, the 95 % interval's
ends dotted) and, for an organ, the projected cumulative BED at the end of the course as a dose volume.

Showing a new projection replaces the patient's previous what-if nodes (found by their COMPASS.content
attribute), so moving a scale slider in the module updates one chart and one volume instead of piling
them up."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from COMPASSLib.errors import InputError
from COMPASSLib.mrml.nodes import ATTRIBUTE_PREFIX, _set_attributes, _style_volume, add_volume, organ_colour
from COMPASSLib.mrml.risk import _fill_table, _series, risk_chart_node
from COMPASSLib.mrml.scene import _nodes, get_scene
from COMPASSLib.twin.whatif import CHANGE_COLUMNS

CONTENT = "whatif"
TABLE_COLUMNS = ("scenario", "organ", "fraction", "delivered", "bed_mean_gy", "eqd2_mean_gy", "risk", "ci_low",
                 "ci_high", "lkb_ntcp")
# line style per scenario, in the order given (as planned first); the organ gives the colour
_STYLES = ("LineStyleDash", "LineStyleDashDot", "LineStyleDot")


@dataclass
class WhatIfNodes:
    patient: str
    table: str                                   # node IDs
    chart: str
    volumes: dict = field(default_factory=dict)  # organ -> projected cumulative BED volume node ID


def remove_whatif(patient: str, scene=None) -> int:
    """Remove the patient's what-if nodes; returns how many."""
    scene = get_scene(scene)
    gone = 0
    for cls in ("vtkMRMLTableNode", "vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode", "vtkMRMLScalarVolumeNode"):
        for node in _nodes(scene, cls):
            if (node.GetAttribute(ATTRIBUTE_PREFIX + "content") == CONTENT
                    and node.GetAttribute(ATTRIBUTE_PREFIX + "patient") == str(patient)):
                scene.RemoveNode(node)
                gone += 1
    return gone


def add_whatif(projection, patient: str, scene=None, bed_images: dict | None = None) -> WhatIfNodes:
    """The patient's projection (DataFrame in twin.whatif.PROJECTION_COLUMNS) as table, chart and, per
    organ in `bed_images` (organ -> SimpleITK image of the projected cumulative BED), a dose volume."""
    scene = get_scene(scene)
    df = projection[projection["patient"].astype(str) == str(patient)]
    if df.empty:
        raise InputError(f"the projection has no rows for patient {patient}", patient=patient)
    remove_whatif(patient, scene)
    order = {name: i for i, name in enumerate(dict.fromkeys(df["scenario"]))}   # as given: as planned first
    df = df.assign(_order=df["scenario"].map(order)).sort_values(["_order", "organ", "fraction"], kind="stable")
    attrs = {"patient": patient, "content": CONTENT, "after": int(df.loc[df["delivered"].astype(bool), "fraction"].max())}
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GetUniqueNameByString(f"{patient} what-if"))
    _fill_table(table, {c: (df[c].astype(str).tolist() if c in ("scenario", "organ") else
                            np.asarray(df[c], dtype=np.int32 if c in ("fraction", "delivered") else np.float64))
                        for c in TABLE_COLUMNS + tuple(c for c in CHANGE_COLUMNS if c in df)})   # where given
    table.SetUseColumnTitleAsColumnHeader(True)
    table.SetColumnDescription("delivered", "1: a delivered fraction; 0: projected under the scenario")
    if "change" in df:
        table.SetColumnDescription("change", "risk minus as planned's; change_low/high: its 95 % interval, "
                                             "the same forecast draws and ensemble members paired")
    _set_attributes(table, attrs)
    chart = _chart(df, patient, scene, attrs)
    volumes = {}
    for organ, image in (bed_images or {}).items():
        node = add_volume(image, f"{patient} {organ} projected BED ({image.GetMetaData('COMPASS_scenario')})"
                          if image.HasMetaDataKey("COMPASS_scenario") else f"{patient} {organ} projected BED",
                          scene, {**attrs, "organ": organ, "modality": "bed"})
        _style_volume(node, "bed", float(np.max(_array(image))))
        volumes[organ] = node.GetID()
    return WhatIfNodes(patient, table.GetID(), chart.GetID(), volumes)


def _array(image):
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(image)


def _chart(df, patient, scene, attrs):
    """Per organ and scenario: the delivered part solid (drawn once), the projected part from the last
    delivered fraction on in the scenario's line style, its interval's ends dotted."""
    chart = risk_chart_node(scene, f"{patient} what-if chart", f"What if: projected toxicity risk, {patient}")
    _set_attributes(chart, attrs)
    scenarios = list(dict.fromkeys(df["scenario"]))
    organs = list(dict.fromkeys(df["organ"]))
    series = []   # (name, rows, y column, colour, line style)
    for i, organ in enumerate(organs):
        colour = organ_colour(organ, i)
        for j, scenario in enumerate(scenarios):
            rows = df[(df["organ"] == organ) & (df["scenario"] == scenario)].sort_values("fraction")
            delivered = rows[rows["delivered"].astype(bool)]
            future = rows[~rows["delivered"].astype(bool)]
            if j == 0 and len(delivered):
                series.append((f"{organ} delivered", delivered, "risk", colour, "LineStyleSolid"))
            if len(future):
                joined = rows[rows["fraction"] >= (delivered["fraction"].max() if len(delivered) else 0)]
                series.append((f"{organ} {scenario}", joined, "risk", colour, _STYLES[j % len(_STYLES)]))
                for end in ("ci_low", "ci_high"):
                    series.append((f"{organ} {scenario} {end}", future, end, colour, "LineStyleDot"))
    # one table per series: the series differ in length, a table's columns may not
    for name, rows, y, colour, style in series:
        t = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GetUniqueNameByString(f"{patient} {name} points"))
        _fill_table(t, {"fraction": np.asarray(rows["fraction"], dtype=np.float64),
                        y: np.asarray(rows[y], dtype=np.float64)})
        _set_attributes(t, attrs)
        s = _series(scene, f"{patient} {name}", t, "fraction", y, colour)
        s.SetLineStyle(getattr(s, style))
        s.SetMarkerStyle(s.MarkerStyleCircle if y == "risk" else s.MarkerStyleNone)
        _set_attributes(s, attrs)
        chart.AddAndObservePlotSeriesNodeID(s.GetID())
    return chart
