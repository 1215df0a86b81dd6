"""The HTML report a physicist opens, read like a clinical research report:

1. headline: what the twin found, in sentences (held-out AUC against the LKB and mean-dose baselines,
   warnings and lead time, how wide the uncertainty is), and the key numbers with 95 % CIs;
2. per-patient panels, warned patients first: the slices through each warned organ with its cumulative
   BED (and texture map) as Slicer's slice views render them, the risk over fractions with the warning
   threshold, the first warning and the onset marked, and the top contributors in words;
3. cohort statistics: ROC, reliability diagram (Brier, calibration slope), per-fraction AUC, the early
   warnings of toxic trajectories, false alarms, which kinds of feature the twin relies on, the LKB
   parameter sets used; provenance last.

One self-contained file (figures are PNGs embedded as base64), drawn only from the files `compass run`
wrote, so `compass report OUT` can regenerate it; the slice renders need the cohort's images (the paths
recorded in OUT) and slicer-core, and are left out with a note where either is missing.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path

from COMPASSLib.errors import CompassError, InputError

log = logging.getLogger(__name__)

NEEDED = ("metrics.json", "risk.csv", "lopo_trajectories.csv")
HEADLINE = [("auc", "Twin AUC"), ("sensitivity", "Sensitivity"), ("specificity", "Specificity"),
            ("brier", "Brier score"), ("lkb_auc", "LKB NTCP AUC"), ("mean_dose_auc", "Mean-dose LR AUC")]
# more patients than this: panels for warned or toxic patients only, the rest in the latest-risk table
MAX_PANELS = 24
# slice renders for the warned organs of at most this many patients (highest held-out risk first): each
# patient's scene is built from its images (seconds per patient)
MAX_RENDERED_PATIENTS = 8
IMAGES_ENV = "COMPASS_REPORT_IMAGES"   # "0": no slice renders (the test suite's default, for speed)

_CSS = """
*{box-sizing:border-box} body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;
padding:1.5em 2em;max-width:1200px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin:0 0 .2em} h2{font-size:1.25em;border-bottom:2px solid #ccd;padding-bottom:.2em;
margin-top:2em} h3{font-size:1.05em;margin:.2em 0 .5em}
.sub{color:#666;font-size:.9em} .lead{font-size:1.05em}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:1em 0} .card{border:1px solid #dde;border-radius:6px;
padding:.5em .8em;min-width:9.5em;flex:1 1 9.5em;background:#fafbfd} .card b{display:block;font-size:1.35em}
.card span{color:#666;font-size:.8em}
.panel{border:1px solid #dde;border-radius:8px;padding:1em;margin:1em 0} .panel.warned{border-left:6px solid #c0392b}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start} .row>*{min-width:0;max-width:100%}
img{max-width:100%;height:auto} figure{margin:0} figcaption{font-size:.8em;color:#555;max-width:30em}
.scroll{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:.85em} td,th{padding:3px 8px;border-bottom:1px solid #e3e3ea;
text-align:left;vertical-align:top} th{background:#f1f2f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.warn td{background:#fdecea} .tag{display:inline-block;padding:0 .4em;border-radius:3px;font-size:.8em;
background:#c0392b;color:#fff} .tag.ok{background:#7f8c8d} ul.why{margin:.2em 0 .2em 1.2em;padding:0;font-size:.9em}
details pre{white-space:pre-wrap;word-break:break-all;font-size:.8em}
"""


def png_data_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return _data_uri(buf.getvalue())


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(v, digits=2):
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


def _ci(m, digits=2):
    lo, hi = (m or {}).get("ci95") or (None, None)
    return f"{_fmt(lo, digits)}–{_fmt(hi, digits)}"


def _value(metrics, key):
    return (metrics.get(key) or {}).get("value")


# --- figures -----------------------------------------------------------------------------------------
def patient_risk_figure(lopo, risk, traj, patient):
    """One patient's risk over fractions per organ: held-out (LOPO) risk solid, final twin dotted, the
    warning threshold dashed, the first warning (triangle) and the onset (star)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.1))
    info = traj[traj["patient"] == patient].set_index("organ")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (organ, g) in enumerate(lopo[lopo["patient"] == patient].groupby("organ")):
        c = colors[i % len(colors)]
        g = g.sort_values("fraction")
        ax.plot(g["fraction"], g["risk"], "-o", color=c, ms=3, lw=1.6, label=organ)
        ax.axhline(float(g["threshold"].iloc[-1]), ls="--", color=c, lw=0.8, alpha=0.6)
        final = risk[(risk["patient"] == patient) & (risk["organ"] == organ)].sort_values("fraction")
        ax.plot(final["fraction"], final["risk"], ":", color=c, lw=1)
        row = info.loc[organ] if organ in info.index else None
        if row is not None and row["warning_fraction"] == row["warning_fraction"]:
            w = float(row["warning_fraction"])
            ax.plot([w], [float(g.loc[g["fraction"] == w, "risk"].iloc[0])], "^", color=c, ms=8, mec="black")
        if row is not None and row["label"] == 1 and row["onset_fraction"] == row["onset_fraction"]:
            at = min(float(row["onset_fraction"]), float(g["fraction"].max()))
            ax.plot([at], [float(g.loc[g["fraction"] <= at, "risk"].iloc[-1])], "*", color="black", ms=10)
    ax.set_ylim(0, 1)
    ax.set_xlabel("fraction")
    ax.set_ylabel("P(grade ≥ 1)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{patient}: risk after each fraction", fontsize=9)
    return fig


def roc_figure(trajectories, metrics):
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(3.8, 3.8))
    y = trajectories["label"].to_numpy(int)
    for col, key, name in (("risk", "auc", "twin (held out)"), ("lkb_ntcp", "lkb_auc", "LKB NTCP"),
                           ("mean_dose_risk", "mean_dose_auc", "mean dose LR")):
        p = trajectories[col].to_numpy(float)
        ok = np.isfinite(p)
        if len(np.unique(y[ok])) == 2:
            fpr, tpr, _ = roc_curve(y[ok], p[ok])
            ax.plot(fpr, tpr, label=f"{name}: {_fmt(_value(metrics, key))}")
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("ROC after the last fraction", fontsize=9)
    return fig


def reliability_figure(metrics, trajectories):
    """Reliability diagram of the held-out final risks: observed rate per predicted-risk bin (marker area
    ~ n) with the bin's 95 % Wilson interval, the diagonal, and the predictions' histogram below."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(3.8, 4.4), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    rows = [r for r in metrics.get("calibration", []) if r["n"]]
    ax.plot([0, 1], [0, 1], ":", color="gray")
    for r in rows:
        lo, hi = _wilson(r["observed_rate"] * r["n"], r["n"])
        ax.plot([r["mean_predicted"]] * 2, [lo, hi], "-", color="tab:blue", lw=1)
        ax.plot([r["mean_predicted"]], [r["observed_rate"]], "o", color="tab:blue", ms=3 + 2 * np.sqrt(r["n"]))
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed rate")
    slope, brier = _value(metrics, "calibration_slope"), _value(metrics, "brier")
    ax.set_title(f"Reliability (Brier {_fmt(brier)}, slope {_fmt(slope)})", fontsize=9)
    hist.hist(trajectories["risk"].dropna(), bins=np.linspace(0, 1, 11), color="tab:gray")
    hist.set_xlim(0, 1)
    hist.set_xlabel("predicted risk (held out)")
    hist.set_ylabel("n")
    return fig


def _wilson(k, n, z=1.96):
    import math

    if not n:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def per_fraction_figure(metrics):
    import matplotlib.pyplot as plt

    rows = metrics.get("per_fraction_auc", [])
    fig, ax = plt.subplots(figsize=(3.8, 3.8))
    for key, name in (("auc", "twin"), ("lkb_auc", "LKB"), ("mean_dose_auc", "mean dose")):
        ax.plot([r["fraction"] for r in rows], [r[key] if r[key] is not None else float("nan") for r in rows],
                "o-", label=name)
    ax.axhline(0.5, ls=":", color="gray")
    ax.set_ylim(0, 1)
    ax.set_xlabel("risk after fraction")
    ax.set_ylabel("AUC (held out)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    ax.set_title("How early the signal is there", fontsize=9)
    return fig


def texture_figure(out_dir, record):
    """One texture map (a `metrics.json` texture_maps record) over its fraction's CT: the axial slice with
    the most ROI voxels, cropped to the organ, CT grey + map colour (NaN and outside-ROI voxels clear)."""
    import matplotlib.pyplot as plt
    import numpy as np
    import SimpleITK as sitk

    path = Path(out_dir) / record["path"]
    tex = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(float)
    ct_path = path.parent / "ct.nrrd"
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))) if ct_path.is_file() else None
    roi = np.isfinite(tex) & (tex != 0)      # outside the ROI: texture_maps' init value 0
    if not roi.any():
        roi = np.isfinite(tex)
    z = int(np.argmax(roi.sum(axis=(1, 2))))
    ys, xs = np.nonzero(roi[z])
    m = 8   # voxels of context around the organ
    sl = (slice(max(ys.min() - m, 0), ys.max() + m + 1), slice(max(xs.min() - m, 0), xs.max() + m + 1)) \
        if ys.size else (slice(None), slice(None))
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    if ct is not None:
        ax.imshow(ct[z][sl], cmap="gray", vmin=-400, vmax=400)
    shown = np.where(roi[z], tex[z], np.nan)[sl]
    im = ax.imshow(shown, cmap="inferno", alpha=0.75 if ct is not None else 1.0)
    fig.colorbar(im, ax=ax, label=record["feature"].replace(":", " "))
    ax.set_title(f"{record['patient']} fraction {record['fraction']} {record['organ']} (axial slice {z})\n"
                 f"local {record['feature'].split(':')[-1]} of the cumulative BED", fontsize=9)
    ax.set_axis_off()
    return fig


def _texture_record(out_dir, metrics):
    """The map the report shows: first patient and feature, latest fraction mapped, the organ with the
    most mapped voxels (a small organ on a coarse grid shows little texture)."""
    import numpy as np
    import SimpleITK as sitk

    maps = [r for r in (metrics.get("texture_maps") or {}).get("maps") or [] if (Path(out_dir) / r["path"]).is_file()]
    if not maps:
        return None
    first = maps[0]
    latest = max(r["fraction"] for r in maps if r["patient"] == first["patient"])
    candidates = [r for r in maps if (r["patient"], r["feature"], r["fraction"]) == (first["patient"],
                                                                                   first["feature"], latest)]

    def voxels(r):
        a = sitk.GetArrayViewFromImage(sitk.ReadImage(str(Path(out_dir) / r["path"])))
        return int(np.count_nonzero(np.isfinite(a) & (a != 0)))
    return max(candidates, key=voxels)


# --- renders of the patient's images by Slicer's slice views ----------------------------------------
def organ_renders(out_dir, patient, organs) -> list:
    """[(organ, caption, png bytes)] of the axial and coronal slices through each organ with the
    cumulative BED (and its texture map where one was written), rendered by Slicer's own slice views
    (COMPASSLib.mrml.render, one scene per patient); [] with a logged reason where the scene cannot be
    built (no slicer-core or no offscreen OpenGL here, the cohort's images moved)."""
    if not organs:
        return []
    try:
        from COMPASSLib.mrml import render

        return render.report_renders(out_dir, patient, organs)
    except (CompassError, ImportError, OSError) as e:
        log.warning("report: no slice renders of %s (%s)", patient, e)
        return []
    except Exception as e:   # noqa: BLE001 - an environment whose VTK cannot render (e.g. a Slicer build
        # without EGL) must not cost the physicist the report: the images are left out, the reason logged
        log.warning("report: no slice renders of %s (%s: %s)", patient, type(e).__name__, e, exc_info=True)
        return []


# --- the text -------------------------------------------------------------------------------------
def headline(metrics, traj) -> str:
    """The report's first paragraph, in sentences a physicist can quote."""
    n_pat, n_traj, n_tox = metrics.get("n_patients"), metrics.get("n_trajectories"), metrics.get("n_toxic")
    lead = metrics.get("lead_time_fractions") or {}
    toxic = traj[traj["label"] == 1]
    warned_toxic = int(toxic["warning_fraction"].notna().sum())
    false_alarms = int(((traj["label"] == 0) & traj["warning_fraction"].notna()).sum())
    cv = (metrics.get("cv") or {}).get("scheme", "leave-one-patient-out")
    auc, lkb, md = (metrics.get(k) or {} for k in ("auc", "lkb_auc", "mean_dose_auc"))
    parts = [f"{n_traj} organ trajectories of {n_pat} patients, {n_tox} with toxicity (CTCAE grade ≥ 1)."
             f" Held out by patient ({html.escape(str(cv))}: every fitted step inside the fold), the twin ranks "
             f"them with an AUC of <b>{_fmt(auc.get('value'))}</b> (95 % CI {_ci(auc)}), against "
             f"{_fmt(lkb.get('value'))} ({_ci(lkb)}) for the LKB NTCP model with published parameters and "
             f"{_fmt(md.get('value'))} ({_ci(md)}) for a mean-dose logistic regression."]
    if n_tox:
        when = (f", a median of <b>{_fmt(lead.get('value'), 1)}</b> fractions before onset"
                if lead.get("value") is not None else "")
        parts.append(f"It warned for <b>{warned_toxic} of {n_tox}</b> toxic trajectories{when}; "
                     f"{n_tox - warned_toxic} were never warned, and {false_alarms} of {n_traj - n_tox} "
                     "trajectories without toxicity raised a false alarm.")
    slope = _value(metrics, "calibration_slope")
    if slope is not None:
        parts.append(f"Brier score {_fmt(_value(metrics, 'brier'))}, calibration slope {_fmt(slope)} "
                     "(1 = risks neither too extreme nor too timid).")
    if n_pat is not None and n_pat < 20:
        parts.append(f"With {n_pat} patients the intervals are wide: read the numbers as a feasibility result, "
                     "not a validation.")
    return " ".join(parts)


def _cards(metrics) -> str:
    keys = HEADLINE + [("calibration_slope", "Calibration slope")]
    cards = [f'<div class="card"><span>{name}</span><b>{_fmt(_value(metrics, k))}</b>'
             f'<span>95 % CI {_ci(metrics.get(k))}</span></div>' for k, name in keys if k in metrics]
    lead = metrics.get("lead_time_fractions") or {}
    cards.append(f'<div class="card"><span>Median lead time</span><b>{_fmt(lead.get("value"), 1)} fx</b>'
                 f'<span>95 % CI {_ci(lead, 1)}</span></div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def _contributors_html(text) -> str:
    from COMPASSLib.twin.explain import contributors_in_words

    words = contributors_in_words(text)
    return "<ul class='why'>" + "".join(f"<li>{html.escape(w)}</li>" for w in words) + "</ul>" if words else ""


def _fraction(v) -> str:
    return "—" if v is None or v != v else str(int(v))


def images_wanted(images=None) -> bool:
    import os

    return bool(images) if images is not None else os.environ.get(IMAGES_ENV, "1") != "0"


def _whatif_html(whatif, patient) -> tuple:
    """(figure HTML, sentences) of the patient's as-planned vs spared projection (whatif_warned.csv)."""
    from COMPASSLib.twin.whatif_plot import projection_figure

    if whatif is None:
        return "", ""
    frame = whatif[whatif["patient"] == str(patient)]
    if frame.empty:
        return "", ""
    after = int(frame["after"].iloc[0])
    spared = [s for s in dict.fromkeys(frame["scenario"]) if s != "as_planned"]
    frame = frame[frame["organ"].isin([s.split("=")[0] for s in spared])]
    last = frame[frame["fraction"] == frame["fraction"].max()].set_index(["scenario", "organ"])
    said = []
    for s in spared:
        organ, _, factor = s.partition("=")
        if (s, organ) in last.index and ("as_planned", organ) in last.index:
            a, b = last.loc[("as_planned", organ)], last.loc[(s, organ)]
            said.append(f"{organ}: as planned {_fmt(a['risk'])} ({_fmt(a['ci_low'])}–{_fmt(a['ci_high'])}) after "
                        f"fraction {int(frame['fraction'].max())}; with its remaining dose × "
                        f"{factor}: {_fmt(b['risk'])} ({_fmt(b['ci_low'])}–{_fmt(b['ci_high'])}){_change(b)}, mean BED "
                        f"{_fmt(a['bed_mean_gy'], 1)} → {_fmt(b['bed_mean_gy'], 1)} Gy")
    fig = (f"<figure><img alt='what if for {html.escape(str(patient))}' src='{png_data_uri(projection_figure(frame, 3.4))}'>"
           f"<figcaption>What if, after fraction {after} (the first warning): the remaining fractions as planned and "
           "with the warned organ's dose scaled (twin.whatif; dose features exact, image features forecast, band: "
           "95 % interval). A change's interval pairs the two projections draw by draw; it holds the classifier's "
           "and the forecast's uncertainty, not the autoencoder's, so the true uncertainty is wider "
           "(docs/whatif.md).</figcaption></figure>")
    text = ("<p><b>What if</b> (projected after fraction " + str(after) + "): "
            + "; ".join(html.escape(x) for x in said) + ".</p>") if said else ""
    return fig, text


def _change(row) -> str:
    """", change -0.15 (-0.22 to -0.08)": the risk change against as planned and its paired interval (the two
    projections' own intervals overlap even where the change's excludes 0); "" for a file without it."""
    from COMPASSLib.twin.whatif import CHANGE_COLUMNS

    if not set(CHANGE_COLUMNS) <= set(row.index) or row["change"] != row["change"]:
        return ""
    return f", change {row['change']:+.2f} ({row['change_low']:+.2f} to {row['change_high']:+.2f})"


def _patient_panel(out, patient, lopo, risk, traj, images=True, whatif=None) -> str:
    e = html.escape
    info = traj[traj["patient"] == patient].sort_values("organ")
    latest = risk[risk["patient"] == patient].sort_values("fraction").groupby("organ").tail(1).set_index("organ")
    warned = info[info["warning_fraction"].notna()]
    status = ", ".join(f"{o} (warned after fraction {_fraction(w)})" for o, w in
                       zip(warned["organ"], warned["warning_fraction"])) or "no organ warned"
    rows = []
    for _, r in info.iterrows():
        now = latest.loc[r["organ"]] if r["organ"] in latest.index else None
        outcome = ("toxicity, onset fraction " + _fraction(r["onset_fraction"]) if r["label"] == 1
                   and r["onset_fraction"] == r["onset_fraction"] else "toxicity" if r["label"] == 1 else "none")
        tag = ('<span class="tag">warned</span>' if r["warning_fraction"] == r["warning_fraction"]
               else '<span class="tag ok">no warning</span>')
        why = _contributors_html(now["top_features"]) if now is not None and (
            r["label"] == 1 or r["warning_fraction"] == r["warning_fraction"]) else ""
        rows.append(f"<tr class='{'warn' if 'warned' in tag and 'ok' not in tag else ''}'><td>{e(r['organ'])}</td>"
                    f"<td class='num'>{_fmt(r['risk'])}</td>"
                    f"<td class='num'>{_fmt(now['risk']) if now is not None else 'n/a'} "
                    f"({_fmt(now['ci_low']) if now is not None else ''}–{_fmt(now['ci_high']) if now is not None else ''})</td>"
                    f"<td>{tag} {_fraction(r['warning_fraction'])}</td><td>{e(outcome)}</td><td>{why}</td></tr>")
    table = ("<div class='scroll'><table><tr><th>organ</th><th>held-out risk</th><th>final twin risk (95 % CI)</th>"
             "<th>first warning (fraction)</th><th>outcome</th><th>top contributors now</th></tr>"
             + "".join(rows) + "</table></div>")
    figs = [f"<figure><img alt='risk over fractions of {e(patient)}' "
            f"src='{png_data_uri(patient_risk_figure(lopo, risk, traj, patient))}'>"
            "<figcaption>Solid: held-out risk (the twin trained without this patient); dotted: final twin; "
            "dashed: warning threshold; ▲ first warning; ★ onset.</figcaption></figure>"]
    for _, caption, png in organ_renders(out, patient, list(warned["organ"]) if images else []):
        figs.append(f"<figure><img alt='{e(caption)}' src='{_data_uri(png)}'><figcaption>{e(caption)}"
                    "</figcaption></figure>")
    whatif_fig, whatif_text = _whatif_html(whatif, patient)
    if whatif_fig:
        figs.insert(1, whatif_fig)
    cls = "panel warned" if len(warned) else "panel"
    return (f"<section class='{cls}' id='patient-{e(str(patient))}'><h3>{e(str(patient))}: {e(status)}</h3>"
            f"<div class='row'>{''.join(figs)}</div>{table}{whatif_text}</section>")


def _warnings_table(traj) -> str:
    """Toxic trajectories (warned or not) and false alarms; words where a number does not exist."""
    e = html.escape
    toxic = traj[traj["label"] == 1].sort_values(["patient", "organ"])
    rows = []
    for _, r in toxic.iterrows():
        warned = r["warning_fraction"] == r["warning_fraction"]
        lead = (f"{int(r['lead_time'])}" if r["lead_time"] == r["lead_time"] else
                "onset not recorded" if warned else "never warned")
        rows.append(f"<tr class='{'' if warned else 'warn'}'><td>{e(str(r['patient']))}</td><td>{e(r['organ'])}</td>"
                    f"<td>{_fraction(r['onset_fraction'])}</td><td>{_fraction(r['warning_fraction']) if warned else 'never'}"
                    f"</td><td>{lead}</td><td class='num'>{_fmt(r['risk'])}</td></tr>")
    alarms = traj[(traj["label"] == 0) & traj["warning_fraction"].notna()]
    alarm_text = ", ".join(f"{p} {o} (fraction {_fraction(w)})" for p, o, w in
                           zip(alarms["patient"], alarms["organ"], alarms["warning_fraction"])) or "none"
    return ("<div class='scroll'><table><tr><th>patient</th><th>organ</th><th>onset (fraction)</th>"
            "<th>first warning</th><th>lead time (fractions)</th><th>held-out risk after last fraction</th></tr>"
            + "".join(rows) + f"</table></div><p>False alarms (no toxicity, warned): {e(alarm_text)}.</p>")


def _lkb_table(metrics) -> str:
    from COMPASSLib import ntcp

    e = html.escape
    base = metrics.get("baselines") or {}
    known = ntcp.parameter_sets()
    rows = []
    for organ, name in sorted((base.get("parameter_sets") or {}).items()):
        p = known.get(name)
        rows.append(f"<tr><td>{e(organ)}</td><td>{e(name)}</td>"
                    + (f"<td class='num'>{p.td50_gy:g}</td><td class='num'>{p.m:g}</td><td class='num'>{p.n:g}</td>"
                       f"<td title='{e(p.citation)}'>{e(p.endpoint)}</td>" if p else "<td colspan=4>not in "
                       "Resources/ntcp_lkb.yaml</td>") + "</tr>")
    what = (f"NTCP from the {e(str(base.get('geud_of', '')).upper())} gEUD column "
            f"<code>{e(str(base.get('geud_column', '')))}</code>; mean-dose regression on "
            f"<code>{e(str(base.get('mean_dose_column', '')))}</code> (fitted inside each fold).")
    return ("<div class='scroll'><table><tr><th>organ</th><th>parameter set</th><th>TD50 (Gy)</th><th>m</th>"
            f"<th>n</th><th>endpoint</th></tr>{''.join(rows)}</table></div><p>{what}</p>")


def _explanations(metrics) -> str:
    ex = metrics.get("explanations")
    if not ex or not ex.get("n_contributors"):
        return ""
    shares = sorted(((v, ex["families"].get(k, k)) for k, v in ex["share"].items() if v), reverse=True)
    items = "".join(f"<li>{html.escape(label)}: {100 * v:.0f} %</li>" for v, label in shares)
    return (f"<h3>What the twin relies on</h3><p>Top contributors of the {ex['n_toxic_trajectories']} toxic "
            f"trajectories after their last fraction, by kind of feature:</p><ul>{items}</ul>")


def _latest_table(risk, traj) -> str:
    """Every patient's organs, grouped by patient, warned rows highlighted."""
    e = html.escape
    latest = risk.sort_values("fraction").groupby(["patient", "organ"]).tail(1).sort_values(["patient", "organ"])
    rows = []
    for patient, g in latest.groupby("patient", sort=True):
        for i, (_, r) in enumerate(g.iterrows()):
            warned = bool(r["warning"]) if r["warning"] == r["warning"] else False
            rows.append(f"<tr class='{'warn' if warned else ''}'><td>{e(str(patient)) if i == 0 else ''}</td>"
                        f"<td>{e(r['organ'])}</td><td class='num'>{int(r['fraction'])}</td>"
                        f"<td class='num'>{_fmt(r['risk'])}</td><td class='num'>{_fmt(r['ci_low'])}–{_fmt(r['ci_high'])}</td>"
                        f"<td>{'<span class=tag>warned</span>' if warned else ''}</td></tr>")
    return ("<div class='scroll'><table><tr><th>patient</th><th>organ</th><th>after fraction</th><th>risk</th>"
            "<th>95 % CI</th><th></th></tr>" + "".join(rows) + "</table></div>")


def render(out_dir, images=None) -> str:
    """The report's HTML. `images`: embed the slice renders of warned organs (default: unless
    $COMPASS_REPORT_IMAGES is "0")."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    missing = [n for n in NEEDED if not (out / n).is_file()]
    if missing:
        raise InputError(f"not a `compass run` output folder (missing {', '.join(missing)})", file=out)
    metrics, risk, traj, lopo = read_outputs(out)
    e = html.escape
    prov = metrics.get("provenance", {})
    # warned patients first, then toxic ones, then the rest
    order = traj.assign(w=traj["warning_fraction"].notna(), t=traj["label"] == 1).groupby("patient")[["w", "t"]].any()
    order = order.sort_values(["w", "t"], ascending=False, kind="stable")
    panel_ids = list(order.index) if len(order) <= MAX_PANELS else list(order[order["w"] | order["t"]].index)
    warned_risk = traj[traj["warning_fraction"].notna()].groupby("patient")["risk"].max()
    rendered = set(warned_risk.sort_values(ascending=False, kind="stable").index[:MAX_RENDERED_PATIENTS]) \
        if images_wanted(images) else set()
    whatif = _read_whatif(out)
    panels = "".join(_patient_panel(out, p, lopo, risk, traj, p in rendered, whatif) for p in panel_ids)
    cohort_figs = [("ROC curves", roc_figure(traj, metrics)),
                   ("reliability diagram", reliability_figure(metrics, traj)),
                   ("AUC after each fraction", per_fraction_figure(metrics))]
    record = _texture_record(out, metrics)
    if record is not None:
        cohort_figs.append(("BED texture map", texture_figure(out, record)))
    figs = "".join(f"<figure><img alt='{alt}' src='{png_data_uri(f)}'></figure>" for alt, f in cohort_figs)
    versions = prov.get("versions") or {}
    created = e(str(prov.get("created", "")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>COMPASS toxicity-risk report</title><style>{_CSS}</style></head>
<body><h1>COMPASS digital twin: toxicity-risk report</h1>
<p class="sub">Generated {created} by COMPASS {e(str(versions.get('COMPASSLib', '')))}.
Research use only: not a medical device.</p>
<h2>Headline</h2><p class="lead">{headline(metrics, traj)}</p>{_cards(metrics)}
<h2>Patients</h2><p class="sub">Warned patients first. Risks are the probability of CTCAE grade ≥ 1 toxicity of
the organ; a warning is raised after the first fraction whose held-out risk reaches the threshold chosen on the
training patients.</p>{panels}
<h2>Cohort statistics</h2><div class="row">{figs}</div>
<h3>Early warnings of the toxic trajectories (held out)</h3>{_warnings_table(traj)}
{_explanations(metrics)}
<h3>Latest risk of every patient and organ (final twin)</h3>{_latest_table(risk, traj)}
<h3>Population baseline: LKB NTCP</h3>{_lkb_table(metrics)}
<h2>Provenance</h2><details><summary>settings and versions that made these results</summary>
<pre>{e(json.dumps({k: prov.get(k) for k in ('created', 'command', 'versions', 'settings')}, indent=1))}</pre></details>
</body></html>
"""


_RISK_COLUMNS = ("patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning", "top_features")
_TRAJECTORY_COLUMNS = ("patient", "organ", "label", "onset_fraction", "warning_fraction", "lead_time")
_LOPO_COLUMNS = ("patient", "organ", "fraction", "risk", "threshold")


def read_outputs(out: Path):
    """(metrics, risk, LOPO trajectories, LOPO per-fraction risk) of a `compass run` folder; a file that is
    not what `compass run` writes (invalid JSON, an unreadable CSV, missing columns) is an InputError
    naming it. Without lopo_risk.csv (older runs) the held-out curves come from risk.csv's lopo_risk."""
    import pandas as pd

    from COMPASSLib.atomic import read_json

    metrics = read_json(out / "metrics.json", "metrics.json of `compass run`")
    if not isinstance(metrics, dict) or not all(isinstance(metrics[k], dict) and "value" in metrics[k]
                                                and len(metrics[k].get("ci95") or ()) == 2
                                                for k, _ in HEADLINE if k in metrics):
        raise InputError("metrics.json is not the metrics `compass run` writes", file=out / "metrics.json")
    tables = []
    wanted = [("risk.csv", _RISK_COLUMNS), ("lopo_trajectories.csv", _TRAJECTORY_COLUMNS)]
    if (out / "lopo_risk.csv").is_file():
        wanted.append(("lopo_risk.csv", _LOPO_COLUMNS))
    for name, columns in wanted:
        try:
            table = pd.read_csv(out / name, dtype={"patient": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read {name}: {' '.join(str(e).split())}", file=out / name) from None
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise InputError(f"{name} lacks column(s) {missing}", file=out / name)
        tables.append(table)
    if len(tables) == 2:
        risk = tables[0]
        lopo = risk.assign(risk=risk.get("lopo_risk", risk["risk"]))
        tables.append(lopo)
    return metrics, tables[0], tables[1], tables[2]


def _read_whatif(out: Path):
    """whatif_warned.csv of `compass run` (the warned organs' as-planned vs spared projection), or None."""
    import pandas as pd

    path = out / "whatif_warned.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype={"patient": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read whatif_warned.csv: {' '.join(str(e).split())}", file=path) from None
    needed = ("scenario", "patient", "organ", "fraction", "delivered", "risk", "ci_low", "ci_high", "bed_mean_gy", "after")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(f"whatif_warned.csv lacks column(s) {missing}", file=path)
    return frame.assign(delivered=frame["delivered"].astype(str).str.lower().isin(("true", "1")))


def write_report(out_dir, images=None) -> Path:
    from COMPASSLib.atomic import write_text

    path = Path(out_dir) / "report.html"
    write_text(path, render(out_dir, images))
    return path
