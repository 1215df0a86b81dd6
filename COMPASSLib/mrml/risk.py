"""Risk in the scene: read a `compass run` risk table (risk.csv), show it as a table node and as a
plot chart of risk over fractions with the toxicity onset and the first warning marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from COMPASSLib.errors import InputError
from COMPASSLib.mrml.nodes import _set_attributes, organ_colour
from COMPASSLib.mrml.scene import _slicer, get_scene, has_app

RISK_COLUMNS = ("patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning")


def read_risk(risk) -> "pandas.DataFrame":  # noqa: F821
    """risk.csv (path) or a DataFrame in the `compass run` contract; checks the columns."""
    import pandas as pd

    source = None
    if not isinstance(risk, pd.DataFrame):
        source = Path(risk)
        try:
            risk = pd.read_csv(source, dtype={"patient": str, "organ": str})
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read risk table: {e}", file=source) from None
    missing = [c for c in RISK_COLUMNS if c not in risk.columns]
    if missing:
        raise InputError(f"risk table lacks column(s) {missing} (expected {', '.join(RISK_COLUMNS)})",
                         file=source)
    return risk


# --- table ---------------------------------------------------------------------------------------
def add_risk_table(risk, patient: str | None = None, scene=None, name: str | None = None):
    """A table node organ x fraction (risk, ci_low, ci_high, warning) for one patient (or all)."""
    scene = get_scene(scene)
    df = read_risk(risk)
    if patient is not None:
        df = df[df["patient"].astype(str) == str(patient)]
        if df.empty:
            raise InputError(f"risk table has no rows for patient {patient}", patient=patient)
    df = df.sort_values(["patient", "organ", "fraction"], kind="stable")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode",
                                    scene.GetUniqueNameByString(name or f"{patient or 'cohort'} risk"))
    _fill_table(table, {c: (df[c].astype(str).tolist() if c in ("patient", "organ") else
                            np.asarray(df[c], dtype=np.int32 if c in ("fraction", "warning") else np.float64))
                        for c in RISK_COLUMNS})
    table.SetUseColumnTitleAsColumnHeader(True)
    for c, unit in (("risk", "probability"), ("ci_low", "probability"), ("ci_high", "probability")):
        table.SetColumnUnitLabel(c, unit)
    table.SetColumnDescription("warning", "1 from the first fraction whose risk passes the twin's threshold")
    _set_attributes(table, {"patient": patient, "content": "risk"})
    return table


def _fill_table(table, columns: dict) -> None:
    """Replace a table node's columns: str lists become string columns (slicer.util's
    updateTableFromArray takes numbers only), numpy arrays keep their dtype."""
    import vtk
    from vtk.util import numpy_support

    vtable = table.GetTable()
    while vtable.GetNumberOfColumns():
        vtable.RemoveColumn(0)
    for name, values in columns.items():
        if isinstance(values, list):
            column = vtk.vtkStringArray()
            for v in values:
                column.InsertNextValue(v)
        else:
            column = numpy_support.numpy_to_vtk(np.ascontiguousarray(values), deep=True)
        column.SetName(name)
        vtable.AddColumn(column)
    table.Modified()


# --- plot ----------------------------------------------------------------------------------------
def add_risk_plot(risk, patient: str, onsets: dict | None = None, scene=None):
    """A plot chart of risk over fractions, one line per organ, with the toxicity onset (organ ->
    fraction, from outcomes.csv) and the first warning marked. Returns the chart node."""
    scene = get_scene(scene)
    df = read_risk(risk)
    df = df[df["patient"].astype(str) == str(patient)]
    if df.empty:
        raise InputError(f"risk table has no rows for patient {patient}", patient=patient)
    organs = list(dict.fromkeys(df["organ"]))
    columns = _risk_by_fraction(df, organs)
    markers = _risk_markers(df, organs, onsets)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GetUniqueNameByString(f"{patient} risk by fraction"))
    _fill_table(table, columns)
    marker_table = _add_marker_table(markers, patient, scene) if markers else None
    chart = _add_risk_chart(patient, organs, table, markers, marker_table, scene)
    _set_attributes(chart, {"patient": patient, "content": "risk"})
    return chart


def _risk_by_fraction(df, organs: list) -> dict:
    """Plot columns: "fraction", then one risk column per organ (NaN where an organ lacks a fraction)."""
    fractions = sorted(df["fraction"].unique())
    wide = df.pivot_table(index="fraction", columns="organ", values="risk", aggfunc="first").reindex(fractions)
    cols, names = [np.asarray(fractions, dtype=np.float64)], ["fraction"]
    for organ in organs:
        cols.append(np.asarray(wide[organ], dtype=np.float64))
        names.append(organ)
    return dict(zip(names, cols))


def _risk_markers(df, organs: list, onsets: dict | None) -> dict:
    """(organ, "warning" | "onset") -> (fraction, risk) of the points to mark: the first warned
    fraction, and the onset at the risk of the last fraction up to it (else the first fraction's)."""
    markers = {}
    for organ in organs:
        rows = df[df["organ"] == organ].sort_values("fraction")
        warned = rows[rows["warning"].astype(int) > 0]
        if len(warned):
            markers[(organ, "warning")] = (float(warned["fraction"].iloc[0]), float(warned["risk"].iloc[0]))
        onset = (onsets or {}).get(organ)
        if onset is not None and not (isinstance(onset, float) and np.isnan(onset)):
            at = rows[rows["fraction"] <= onset]
            y = float(at["risk"].iloc[-1]) if len(at) else float(rows["risk"].iloc[0])
            markers[(organ, "onset")] = (float(onset), y)
    return markers


def _add_marker_table(markers: dict, patient: str, scene):
    """A table node with one x and one y column (a single row) per marker."""
    marker_table = scene.AddNewNodeByClass("vtkMRMLTableNode",
                                           scene.GetUniqueNameByString(f"{patient} onset and warning"))
    mcols, mnames = [], []
    for (organ, kind), (x, y) in markers.items():
        mcols += [np.array([x]), np.array([y])]
        mnames += [f"{organ} {kind} fraction", f"{organ} {kind} risk"]
    _fill_table(marker_table, dict(zip(mnames, mcols)))
    return marker_table


def _add_risk_chart(patient: str, organs: list, table, markers: dict, marker_table, scene):
    """The chart: a line per organ in the organ's colour, its markers (onset: diamond, warning: square)."""
    chart = risk_chart_node(scene, f"{patient} risk chart", f"Toxicity risk over fractions: {patient}")
    for i, organ in enumerate(organs):
        colour = organ_colour(organ, i)
        s = _series(scene, f"{patient} {organ} risk", table, "fraction", organ, colour)
        s.SetMarkerStyle(s.MarkerStyleCircle)
        chart.AddAndObservePlotSeriesNodeID(s.GetID())
        for kind, style in (("onset", "MarkerStyleDiamond"), ("warning", "MarkerStyleSquare")):
            if (organ, kind) in markers:
                m = _series(scene, f"{patient} {organ} {kind}", marker_table, f"{organ} {kind} fraction",
                            f"{organ} {kind} risk", colour)
                m.SetLineStyle(m.LineStyleNone)
                m.SetMarkerStyle(getattr(m, style))
                m.SetMarkerSize(12 if kind == "onset" else 9)
                chart.AddAndObservePlotSeriesNodeID(m.GetID())
    return chart


def risk_chart_node(scene, name: str, title: str):
    """An empty plot chart of risk (0-1) over fractions."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GetUniqueNameByString(name))
    chart.SetTitle(title)
    chart.SetXAxisTitle("fraction")
    chart.SetYAxisTitle("risk (probability of CTCAE grade >= 1)")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(0.0, 1.0)
    return chart


def _series(scene, name, table, x, y, colour):
    s = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GetUniqueNameByString(name))
    s.SetAndObserveTableNodeID(table.GetID())
    s.SetXColumnName(x)
    s.SetYColumnName(y)
    s.SetPlotType(s.PlotTypeScatter)
    s.SetColor(*colour)
    return s


def show_plot(chart) -> None:
    """Show a chart in the application's plot view (nothing to do on slicer-core)."""
    if has_app():
        slicer = _slicer()
        slicer.modules.plots.logic().ShowChartInLayout(chart)
