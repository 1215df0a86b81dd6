"""The `compass view` web app: one patient's COMPASS scene in the browser, drawn by Slicer's own view code.

The page (trame, Vue 3 + Vuetify): the axial, sagittal and coronal slice views (CT behind, a BED / EQD2 /
dose / PET / texture-map overlay in front, with its colour legend) and the 3D view of the organ surfaces,
a fraction slider that drives the scene's sequence browser, and beside the views the patient's risk table
and risk-over-fractions chart (report.patient_risk_figure: the report's chart, one code path).

How the views reach the browser: each view is one of `render`'s offscreen VTK windows (EGL, no display);
trame-rca streams it as images (render -> read back -> PNG -> websocket) and sends mouse events back, as
trame-slicer does internally (its own views need slicer-layer-dm, built only for slicer-core 5.11:
docs/view.md). `StreamedView` is the bridge, trame-rca's `RemoteControlledAreaProtocol`: the wheel moves a
slice view's slice by one voxel (Slicer's wheel); in the 3D view the mouse turns the camera (VTK's
trackball style through vtkRemoteInteractionAdapter, as trame-rca does for any VTK window).

It sits beside report.py (the same layer: it reads the run's outputs with the report's reader and draws
its chart) and above mrml/ (the scene and its views). The scene is the one the Slicer module and batch
mode make (`render.open_patient`: OUT/scenes/<patient>.mrb,
else `mrml.load_patient`); the app adds no second way to build it. No PHI leaves the server but the
rendered images, the patient id and the risk numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from COMPASSLib.errors import InputError
from COMPASSLib.mrml import render
from COMPASSLib.mrml.nodes import ATTRIBUTE_PREFIX

VIEW_SIZE = (360, 360)                   # first render size; the browser's element size follows
OVERLAY_LABELS = {"bed": "BED", "eqd2": "EQD2", "dose": "dose", "pet": "PET"}
OVERLAY_UNITS = {"bed": "Gy", "eqd2": "Gy", "dose": "Gy", "pet": "SUV"}
LEGEND_STEPS = 24


# --- a view as trame-rca sees it ------------------------------------------------------------------
class StreamedView:
    """trame-rca's RemoteControlledAreaProtocol over one `render` view: the image it shows, its size and
    the mouse events of its element in the page."""

    def __init__(self, view, on_slice_moved=None):
        self.view = view
        self.is_slice = isinstance(view, render.SliceView)
        self.on_slice_moved = on_slice_moved
        self._spin = 0.0   # wheel spin not yet turned into a slice step (a trackpad sends many small ones)
        if not self.is_slice:
            import vtk

            view.interactor.SetInteractorStyle(vtk.vtkInteractorStyleTrackballCamera())
        view.interactor.EnableRenderOff()   # we render, when the scheduler asks for a frame

    @property
    def img_cols_rows(self):
        rgb = self.view.rgb()
        return rgb, rgb.shape[1], rgb.shape[0]

    def process_resize_event(self, width: int, height: int) -> None:
        if (int(width), int(height)) == tuple(self.view.size):
            return
        if self.is_slice:   # refit to the new shape, keeping the slice where it is
            offset = self.view.offset
            self.view.set_size((width, height))
            self.view.fit()
            self.view.set_offset(offset)
        else:
            self.view.set_size((width, height))

    def process_interaction_event(self, event: dict) -> None:
        kind = event.get("type", "")
        if self.is_slice:
            if kind == "MouseWheel" and event.get("spinY"):
                # One slice per notch, as in Slicer; wheel away from the user (spinY < 0) moves up the slice
                # axis. Only MouseWheel: vtk.js sends every notch as one, and the first notch of a gesture
                # as a StartMouseWheel too (same spinY), so handling both moved two slices on that notch.
                # The spin adds up to a step as in VTK's vtkRemoteInteractionAdapter (and Qt's 120 units
                # per step in Slicer): a mouse notch is one step, a trackpad's many small events are not
                # one step each. A turn the other way starts afresh (as vtk.js's own spin buffering).
                spin = float(event["spinY"])
                self._spin = (self._spin if self._spin * spin > 0 else 0.0) + spin
                if abs(self._spin) >= 1.0 - 1e-9:
                    self.view.scroll(-1 if self._spin > 0 else 1)
                    self._spin = 0.0
                    if self.on_slice_moved is not None:
                        self.on_slice_moved()
            return
        if kind in ("StartInteractionEvent", "EndInteractionEvent"):
            return
        import vtk

        vtk.vtkRemoteInteractionAdapter.ProcessEvent(self.view.interactor, json.dumps(event))


# --- what the page shows besides the views ---------------------------------------------------------
@dataclass
class RunResults:
    """The `compass run` outputs the page shows (report.read_outputs: the same reading as the report);
    None where OUT holds no risk results (a batch run with scenes only)."""
    metrics: dict
    risk: object
    trajectories: object
    lopo: object

    @classmethod
    def read(cls, out_dir: Path):
        from COMPASSLib import report

        if not all((out_dir / n).is_file() for n in report.NEEDED):
            return None
        return cls(*report.read_outputs(out_dir))


def legend(node, kind: str) -> dict:
    """The overlay's colour legend: its colour table sampled over the display's window (low..high), and
    the lower threshold below which voxels are not drawn."""
    display = node.GetDisplayNode()
    low, high = display.GetWindowLevelMin(), display.GetWindowLevelMax()
    colours = display.GetColorNode().GetScalarsToColors()
    c_low, c_high = colours.GetRange()
    stops = []
    for t in np.linspace(0.0, 1.0, LEGEND_STEPS):
        rgb = [0.0, 0.0, 0.0]
        colours.GetColor(c_low + t * (c_high - c_low), rgb)
        stops.append("rgb({},{},{}) {:.0f}%".format(*(int(round(255 * c)) for c in rgb), 100 * t))
    if kind.startswith("texture"):
        from COMPASSLib.mrml.texture import texture_unit

        feature = node.GetAttribute(ATTRIBUTE_PREFIX + "feature") or "texture"
        title, unit = f"BED texture {feature}", texture_unit(feature) or ""
    else:
        title, unit = OVERLAY_LABELS[kind], OVERLAY_UNITS[kind]
    threshold = display.GetLowerThreshold() if display.GetApplyThreshold() else None
    return {"title": title, "unit": unit, "low": f"{low:.3g}", "high": f"{high:.3g}",
            "gradient": f"linear-gradient(to right, {', '.join(stops)})",
            "below": f"below {threshold:.3g} {unit} not drawn" if threshold is not None else ""}


def risk_rows(results: RunResults | None, patient: str, fraction: int) -> list:
    """One row per organ: the final twin's risk after `fraction` with its 95 % interval and warning (as
    risk.csv holds them), the first held-out warning and the onset."""
    if results is None:
        return []
    risk = results.risk
    at = risk[(risk["patient"] == patient) & (risk["fraction"] == fraction)].sort_values("organ")
    traj = results.trajectories
    traj = traj[traj["patient"] == patient].set_index("organ")
    rows = []
    for _, r in at.iterrows():
        t = traj.loc[r["organ"]] if r["organ"] in traj.index else None
        warned = bool(r["warning"]) if r["warning"] == r["warning"] else False
        first = t["warning_fraction"] if t is not None else float("nan")
        onset = t["onset_fraction"] if t is not None and t["label"] == 1 else float("nan")
        rows.append({"organ": str(r["organ"]), "risk": f"{r['risk']:.3f}",
                     "ci": f"{r['ci_low']:.3f}–{r['ci_high']:.3f}", "warning": warned,
                     "first_warning": "" if first != first else f"{int(first)}",
                     "onset": "" if onset != onset else f"{int(onset)}"})
    return rows


def risk_chart(results: RunResults | None, patient: str, fraction: int) -> str:
    """The report's risk-over-fractions figure of the patient (PNG data URI) with the shown fraction
    marked; '' without results."""
    if results is None:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    from COMPASSLib import report

    fig = report.patient_risk_figure(results.lopo, results.risk, results.trajectories, patient)
    fig.axes[0].axvline(fraction, color="0.45", lw=1.0, zorder=0)
    return report.png_data_uri(fig)


# --- the app -------------------------------------------------------------------------------------
class ViewerApp:
    """The scene, its views and the trame server of one patient."""

    def __init__(self, out_dir, patient: str | None = None, cohort=None, server_name: str = "compass-view"):
        from trame.app import get_server

        out_dir = Path(out_dir)
        if not out_dir.is_dir():
            raise InputError("no such output folder", file=out_dir)
        self.out_dir = out_dir
        if cohort is None and (out_dir / "metrics.json").is_file():
            from COMPASSLib.atomic import read_json

            cohort = read_json(out_dir / "metrics.json", "run metrics").get("cohort")
        self.results = RunResults.read(out_dir)
        if patient is None and self.results is not None and not (out_dir / "scenes").is_dir():
            ids = sorted(self.results.risk["patient"].astype(str).unique())
            patient = ids[0] if len(ids) == 1 else None
        self.patient = render.open_patient(out_dir, patient, cohort)
        self.textures = self._add_texture_maps()
        render.check_rendering()
        self.views = render.PatientViews(self.patient, VIEW_SIZE)
        self.overlays = self._overlays()
        self._focus_first_warned_organ()
        self.server = get_server(server_name, client_type="vue3")
        self.streams = {}
        self._build_state()
        self._build_ui()

    # the scene ---------------------------------------------------------------------------------
    def _add_texture_maps(self) -> list:
        """Texture maps of `compass run --texture-maps` (OUT/texture/<patient>/fx<k>/) as overlays of
        their fractions; returns the organs that have one."""
        from COMPASSLib.atomic import safe_filename
        from COMPASSLib.mrml.texture import add_texture_files

        folder = self.out_dir / "texture" / safe_filename(self.patient.patient)
        organs = set()
        for k in self.patient.fractions:
            if (folder / f"fx{k}" / "texture_maps.json").is_file():
                for node in add_texture_files(self.out_dir, self.patient.patient, k, self.patient.scene,
                                              self.patient.proxy("ct")):
                    organs.add(node.GetAttribute(ATTRIBUTE_PREFIX + "organ") or
                               (node.GetAttribute(ATTRIBUTE_PREFIX + "file") or "").split("_")[0])
        return sorted(o for o in organs if o)

    def _overlays(self) -> list:
        out = [{"key": k, "label": label} for k, label in OVERLAY_LABELS.items() if self.patient.proxy(k)]
        out += [{"key": f"texture:{o}", "label": f"texture {o}"} for o in self.textures]
        if not out:
            raise InputError("the scene has no dose, BED or PET series to show", patient=self.patient.patient)
        return out

    def _focus_first_warned_organ(self) -> None:
        organs = self.patient.organs()
        warned = [r["organ"] for r in risk_rows(self.results, self.patient.patient, self.patient.fractions[-1])
                  if r["warning"]]
        target = next((o for o in warned + ["GTV", "Heart"] if o in organs), None)
        if target is not None:
            self.views.through(target)

    def show(self, fraction: int, overlay: str) -> None:
        """The scene at a fraction with an overlay (the texture map of that fraction, where it has one)."""
        self.patient.show_fraction(fraction)
        kind, _, organ = overlay.partition(":")
        node = self.patient.overlay(kind, organ or None)
        for view in self.views.slices.values():
            view.composite.SetForegroundVolumeID(node.GetID() if node is not None else None)
            if node is not None and view.composite.GetForegroundOpacity() <= 0:
                view.composite.SetForegroundOpacity(0.5)
        state = self.server.state
        state.legend = legend(node, overlay) if node is not None else None
        state.overlay_note = "" if node is not None else f"no {overlay.replace(':', ' ')} map at fraction {fraction}"

    # the page state ----------------------------------------------------------------------------
    def _build_state(self) -> None:
        state = self.server.state
        fractions = self.patient.fractions
        state.patient = self.patient.patient
        state.fractions = fractions
        state.fraction_index = len(fractions) - 1
        state.fraction = fractions[-1]
        state.overlays = self.overlays
        state.overlay = self.overlays[0]["key"]
        state.legend = None
        state.overlay_note = ""
        state.rows = []
        state.chart = ""
        state.has_results = self.results is not None
        state.positions = {}
        self._update(state.fraction_index, state.overlay)
        state.change("fraction_index", "overlay")(self._on_change)

    def _on_change(self, fraction_index, overlay, **_):
        self._update(fraction_index, overlay)
        for stream in self.streams.values():
            stream.schedule_render()

    def _update(self, fraction_index, overlay) -> None:
        state = self.server.state
        k = self.patient.fractions[int(fraction_index)]
        state.fraction = k
        self.show(k, overlay)
        state.rows = risk_rows(self.results, self.patient.patient, k)
        state.chart = risk_chart(self.results, self.patient.patient, k)
        self._positions()

    def _positions(self) -> None:
        """The slice positions shown under each slice view (mm along its axis, as Slicer's slider)."""
        axis = {"axial": "S", "sagittal": "R", "coronal": "A"}
        self.server.state.positions = {name: f"{axis[name]} {v.offset:.1f} mm"
                                       for name, v in self.views.slices.items()}

    def _slice_moved(self) -> None:
        self._positions()
        self.server.state.flush()

    # the page ----------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        from trame.ui.vuetify3 import SinglePageLayout
        from trame.widgets import html, rca
        from trame.widgets import vuetify3 as v

        server = self.server
        names = [*render.SLICE_VIEWS, "3d"]
        titles = {"axial": "Axial", "sagittal": "Sagittal", "coronal": "Coronal", "3d": "3D: organ surfaces"}
        with SinglePageLayout(server) as layout:
            layout.title.set_text(f"COMPASS · {self.patient.patient}")
            layout.icon.hide()     # no drawer
            layout.footer.hide()
            with layout.toolbar:
                v.VSpacer()
                html.Span("research use only · not a medical device", style="font-size:.8em;opacity:.7")
            with layout.content:
                with html.Div(style="display:flex;gap:12px;padding:8px;align-items:flex-start;flex-wrap:wrap"):
                    with html.Div(style="display:grid;grid-template-columns:repeat(2,minmax(260px,1fr));gap:6px;"
                                        "flex:3 1 560px"):
                        for name in names:
                            with html.Div(classes="compass-view", id=f"view-{name}",
                                          style="background:#111;border-radius:4px;overflow:hidden"):
                                html.Div(titles[name], style="color:#ddd;font-size:.8em;padding:2px 6px")
                                with html.Div(id=f"area-{name}", style="height:340px;position:relative"):
                                    area = rca.RemoteControlledArea(name=name, display="image",
                                                                    style="width:100%;height:100%")
                                if name != "3d":
                                    html.Div(f"{{{{ positions['{name}'] }}}}", id=f"position-{name}",
                                             style="color:#aaa;font-size:.75em;padding:1px 6px")
                            view = self.views.threed if name == "3d" else self.views.slices[name]
                            # png: lossless colours; one quality, so each change renders once
                            self.streams[name] = area.create_view_handler(
                                StreamedView(view, self._slice_moved), encoder="png",
                                interactive_quality=90, still_quality=90)
                    with html.Div(style="flex:2 1 360px;min-width:320px"):
                        self._controls(html, v)
                        self._risk_panel(html)

    def _controls(self, html, v) -> None:
        with v.VCard(classes="mb-2", variant="outlined"):
            v.VCardTitle("Overlay", classes="text-subtitle-1")
            with v.VCardText():
                with v.VBtnToggle(v_model=("overlay",), mandatory=True, density="compact", divided=True,
                                  variant="outlined", id="overlay-toggle"):
                    v.VBtn("{{ o.label }}", v_for="o in overlays", key="o.key", value=("o.key",),
                           size="small")
                with html.Div(v_if="legend", id="legend", classes="mt-2"):
                    html.Div("{{ legend.title }}{{ legend.unit ? ' (' + legend.unit + ')' : '' }}", style="font-size:.85em")
                    html.Div(style=("{height: '14px', borderRadius: '2px', background: legend.gradient}",))
                    with html.Div(style="display:flex;justify-content:space-between;font-size:.75em"):
                        html.Span("{{ legend.low }}")
                        html.Span("{{ legend.below }}", style="opacity:.7")
                        html.Span("{{ legend.high }}")
                html.Div("{{ overlay_note }}", v_if="overlay_note", classes="text-warning", style="font-size:.85em")
            v.VCardTitle("Fraction {{ fraction }}", classes="text-subtitle-1", id="fraction-title")
            with v.VCardText():
                v.VSlider(v_model=("fraction_index",), min=0, max=("fractions.length - 1",), step=1,
                          show_ticks="always", tick_size=4, hide_details=True, id="fraction-slider",
                          ticks=("Object.fromEntries(fractions.map((f, i) => [i, String(f)]))",))

    def _risk_panel(self, html) -> None:
        with html.Div(v_if="has_results"):
            html.Div("Risk of grade ≥ 1 toxicity after fraction {{ fraction }} (final twin, 95 % CI)",
                     style="font-size:.9em;font-weight:600;margin:4px 0")
            with html.Table(id="risk-table", style="border-collapse:collapse;font-size:.85em;width:100%"):
                with html.Tr():
                    for head in ("organ", "risk", "95 % CI", "warning", "first warning", "onset"):
                        html.Th(head, style="text-align:left;border-bottom:1px solid #ccc;padding:2px 6px")
                with html.Tr(v_for="row in rows", key="row.organ",
                             style=("row.warning ? {background: '#fdecea'} : {}",)):
                    html.Td("{{ row.organ }}", style="padding:2px 6px")
                    html.Td("{{ row.risk }}", style="padding:2px 6px;text-align:right")
                    html.Td("{{ row.ci }}", style="padding:2px 6px")
                    html.Td("{{ row.warning ? 'warned' : '' }}", style="padding:2px 6px;color:#c0392b")
                    html.Td("{{ row.first_warning }}", style="padding:2px 6px")
                    html.Td("{{ row.onset }}", style="padding:2px 6px")
            html.Img(src=("chart",), id="risk-chart", style="max-width:100%;margin-top:6px",
                     alt="risk after each fraction")
        html.Div("This output folder holds no risk results (risk.csv): scene only.", v_if="!has_results",
                 style="font-size:.85em")

    def start(self, port: int = 8080, host: str = "127.0.0.1", ready=None) -> None:
        """Serve until stopped (Ctrl-C, SIGTERM). `ready(url)` is called once the port is open."""
        import os

        # trame would read its options from sys.argv (compass's own); we pass them all here
        os.environ.setdefault("TRAME_ARGS", "")
        if ready is not None:
            self.server.controller.on_server_ready.add(
                lambda **_: ready(f"http://{host}:{self.server.port}/"))
        self.server.start(port=port, host=host, open_browser=False, show_connection_info=False, timeout=0,
                          disable_logging=True)
