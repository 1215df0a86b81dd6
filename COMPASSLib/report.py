"""The HTML report a physicist opens: headline metrics with 95 % CIs (twin vs LKB vs mean dose), risk
over fractions per organ with the onset marked, ROC curves, calibration, per-fraction AUC, and every
patient/organ's latest risk with its warning and top contributing features. One self-contained file:
figures are matplotlib PNGs embedded as base64. Drawn only from the files `compass run` wrote, so
`compass report OUT` can regenerate it."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from COMPASSLib.errors import InputError

NEEDED = ("metrics.json", "risk.csv", "lopo_trajectories.csv")
HEADLINE = [("auc", "Twin AUC"), ("sensitivity", "Sensitivity"), ("specificity", "Specificity"),
            ("brier", "Brier score"), ("lkb_auc", "LKB NTCP AUC"), ("mean_dose_auc", "Mean-dose LR AUC")]


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def risk_figure(risk, trajectories):
    """One panel per organ: the final twin's risk after each fraction per patient (red: toxicity),
    threshold dashed, onset marked with a star (at the last fraction when onset comes later)."""
    import matplotlib.pyplot as plt

    organs = sorted(risk["organ"].unique())
    fig, axes = plt.subplots(1, len(organs), figsize=(4.2 * len(organs), 3.4), squeeze=False, sharey=True)
    info = trajectories.set_index(["patient", "organ"])
    for ax, organ in zip(axes[0], organs):
        for (patient, _), g in risk[risk["organ"] == organ].groupby(["patient", "organ"]):
            row = info.loc[(patient, organ)] if (patient, organ) in info.index else None
            toxic = row is not None and row["label"] == 1
            ax.plot(g["fraction"], g["risk"], "-", color="tab:red" if toxic else "tab:blue", alpha=0.6, lw=1)
            if toxic and row["onset_fraction"] == row["onset_fraction"]:
                at = min(float(row["onset_fraction"]), float(g["fraction"].max()))
                ax.plot([at], [float(g.loc[g["fraction"] <= at, "risk"].iloc[-1])], "*", color="black", ms=8)
        ax.axhline(float(risk.loc[risk["organ"] == organ, "threshold"].iloc[0]), ls="--", color="gray", lw=1)
        ax.set_title(organ)
        ax.set_xlabel("fraction")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("P(toxicity grade >= 1)")
    fig.suptitle("Risk over fractions (red: toxicity, blue: none, *: onset, dashed: warning threshold)",
                 fontsize=9)
    return fig


def roc_figure(trajectories, metrics):
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4, 4))
    y = trajectories["label"].to_numpy(int)
    for col, key, name in (("risk", "auc", "twin (LOPO)"), ("lkb_ntcp", "lkb_auc", "LKB NTCP"),
                           ("mean_dose_risk", "mean_dose_auc", "mean dose LR")):
        p = trajectories[col].to_numpy(float)
        ok = np.isfinite(p)
        if len(np.unique(y[ok])) == 2:
            fpr, tpr, _ = roc_curve(y[ok], p[ok])
            ax.plot(fpr, tpr, label=f"{name}: {_fmt(metrics.get(key, {}).get('value'))}")
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("ROC after the last fraction")
    return fig


def calibration_figure(metrics):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    rows = [r for r in metrics.get("calibration", []) if r["n"]]
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.plot([r["mean_predicted"] for r in rows], [r["observed_rate"] for r in rows], "o-")
    for r in rows:
        ax.annotate(str(r["n"]), (r["mean_predicted"], r["observed_rate"]), fontsize=7,
                    textcoords="offset points", xytext=(4, -8))
    ax.set_xlabel("predicted risk (LOPO)")
    ax.set_ylabel("observed toxicity rate")
    ax.set_title("Calibration (n per bin)")
    return fig


def per_fraction_figure(metrics):
    import matplotlib.pyplot as plt

    rows = metrics.get("per_fraction_auc", [])
    fig, ax = plt.subplots(figsize=(4, 4))
    for key, name in (("auc", "twin"), ("lkb_auc", "LKB"), ("mean_dose_auc", "mean dose")):
        ax.plot([r["fraction"] for r in rows], [r[key] if r[key] is not None else float("nan") for r in rows],
                "o-", label=name)
    ax.axhline(0.5, ls=":", color="gray")
    ax.set_ylim(0, 1)
    ax.set_xlabel("fraction")
    ax.set_ylabel("AUC (LOPO)")
    ax.legend(fontsize=8)
    ax.set_title("How early the signal is there")
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
    fig, ax = plt.subplots(figsize=(5, 4.2))
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


def _fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table(frame) -> str:
    return frame.to_html(index=False, escape=True, border=0, classes="t", float_format=lambda v: f"{v:.3f}")


def render(out_dir) -> str:
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    missing = [n for n in NEEDED if not (out / n).is_file()]
    if missing:
        raise InputError(f"not a `compass run` output folder (missing {', '.join(missing)})", file=out)
    metrics, risk, traj = _read_outputs(out)
    head = "".join(f"<tr><td>{name}</td><td>{_fmt(metrics[k]['value'], 3)}</td>"
                   f"<td>[{_fmt(metrics[k]['ci95'][0], 3)}, {_fmt(metrics[k]['ci95'][1], 3)}]</td></tr>"
                   for k, name in HEADLINE if k in metrics)
    lead = metrics.get("lead_time_fractions", {})
    latest = risk.sort_values("fraction").groupby(["patient", "organ"]).tail(1).sort_values(["patient", "organ"])
    latest = latest[["patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning", "top_features"]]
    warn = traj[["patient", "organ", "label", "onset_fraction", "warning_fraction", "lead_time"]]
    prov = metrics.get("provenance", {})
    figs = [risk_figure(risk, traj), roc_figure(traj, metrics), calibration_figure(metrics),
            per_fraction_figure(metrics)]
    record = _texture_record(out, metrics)
    if record is not None:
        figs.append(texture_figure(out, record))
    imgs = "".join(f'<img src="{_png(f)}">' for f in figs)
    e = html.escape
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>COMPASS report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}} table.t,table.m{{border-collapse:collapse;font-size:13px}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}} img{{margin:4px;vertical-align:top}}</style></head>
<body><h1>COMPASS digital twin: toxicity risk report</h1>
<p>{metrics.get('n_trajectories')} organ trajectories of {metrics.get('n_patients')} patients,
{metrics.get('n_toxic')} with toxicity (CTCAE grade &ge; 1). Metrics are leave-one-patient-out (every fitted step
inside the fold) with patient-level bootstrap 95 % confidence intervals; risk curves are from the final twin
trained on all patients.</p>
<h2>Headline</h2><table class="m"><tr><th>metric</th><th>value</th><th>95 % CI</th></tr>{head}
<tr><td>Median lead time (fractions)</td><td>{_fmt(lead.get('value'), 1)}</td>
<td>[{_fmt((lead.get('ci95') or [None])[0], 1)}, {_fmt((lead.get('ci95') or [None, None])[1], 1)}]</td></tr></table>
<p>Lead time = onset fraction - first fraction with risk &ge; the fold's training-chosen threshold
({e(str(lead.get('statistic', '')))}); toxic trajectories never warned: {lead.get('n_toxic_never_warned')}.
LKB: {e(json.dumps(metrics.get('baselines', {})))}.</p>
<h2>Figures</h2>{imgs}
<h2>Latest risk per patient and organ (final twin)</h2>{_table(latest)}
<h2>Early warnings (LOPO)</h2>{_table(warn)}
<h2>Provenance</h2><pre>{e(json.dumps({k: prov.get(k) for k in ('created', 'command', 'versions', 'settings')}, indent=1))}</pre>
</body></html>
"""


_RISK_COLUMNS = ("patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning", "top_features")
_TRAJECTORY_COLUMNS = ("patient", "organ", "label", "onset_fraction", "warning_fraction", "lead_time")


def _read_outputs(out: Path):
    """(metrics, risk, LOPO trajectories) of a `compass run` folder; a file that is not what `compass run`
    writes (invalid JSON, an unreadable CSV, missing columns) is an InputError naming it."""
    import pandas as pd

    from COMPASSLib.atomic import read_json

    metrics = read_json(out / "metrics.json", "metrics.json of `compass run`")
    if not isinstance(metrics, dict) or not all(isinstance(metrics[k], dict) and "value" in metrics[k]
                                                and len(metrics[k].get("ci95") or ()) == 2
                                                for k, _ in HEADLINE if k in metrics):
        raise InputError("metrics.json is not the metrics `compass run` writes", file=out / "metrics.json")
    tables = []
    for name, columns in (("risk.csv", _RISK_COLUMNS), ("lopo_trajectories.csv", _TRAJECTORY_COLUMNS)):
        try:
            table = pd.read_csv(out / name)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read {name}: {' '.join(str(e).split())}", file=out / name) from None
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise InputError(f"{name} lacks column(s) {missing}", file=out / name)
        tables.append(table)
    return metrics, tables[0], tables[1]


def write_report(out_dir) -> Path:
    from COMPASSLib.atomic import write_text

    path = Path(out_dir) / "report.html"
    write_text(path, render(out_dir))
    return path
