"""`compass dvh`: DVH metrics of every ROI of a structure set on a dose grid."""
from __future__ import annotations

import json
import math

HELP = "DVH metrics (volume, min/max/mean, D2cc, D95, ...) of ROIs on a dose grid"
DESCRIPTION = (
    "Cumulative DVH metrics of the ROIs of STRUCTURES (RTSTRUCT, labelmap or .seg.nrrd) in DOSE "
    "(RTDOSE or NRRD/NIfTI in Gy). Without a CT the dose grid is the reference grid: contours are "
    "rasterised onto it. Dxcc is the minimum dose to the hottest x cc; Dx% the same for x% of the ROI.")

# Shown in the table, in order; --json prints every metric.
_TABLE = (("volume_cc", "Volume cc"), ("min_gy", "Min Gy"), ("max_gy", "Max Gy"), ("mean_gy", "Mean Gy"),
          ("d2cc_gy", "D2cc Gy"), ("d0_1cc_gy", "D0.1cc Gy"), ("d95_gy", "D95 Gy"), ("d98_gy", "D98 Gy"))


def add_arguments(parser):
    parser.add_argument("--dose", required=True, nargs="+", metavar="DOSE",
                        help="dose in Gy: RTDOSE file(s) (summed) or one NRRD/NIfTI volume")
    parser.add_argument("--structures", required=True, metavar="STRUCTURES",
                        help="RTSTRUCT file, labelmap or Slicer .seg.nrrd")
    parser.add_argument("--roi", action="append", metavar="NAME", help="only this ROI (repeatable)")
    parser.add_argument("--vx", action="append", type=float, default=[], metavar="GY",
                        help="also report Vx (cc and %%) at this dose (repeatable)")
    parser.add_argument("--json", action="store_true", help='print {"rois": [...]} as JSON')


def roi_metrics(dose_image, masks: dict, vx_gy=()) -> list:
    """One dict per ROI: name, organ (canonical or None), the DVH metrics, and gEUD with the organ's n
    (Resources/organs.yaml) when the ROI is a known organ."""
    from COMPASSLib import dose, resources

    rows = []
    for name, mask in masks.items():
        organ = resources.canonical_organ(name)
        n = resources.geud_n(organ) if organ else None
        metrics = dose.dvh(dose_image, mask).metrics(vx_gy=vx_gy, geud_n=n)
        rows.append({"name": name, "organ": organ, **metrics})
    return rows


def _table(rows) -> str:
    width = max([len("ROI")] + [len(r["name"]) for r in rows])
    lines = ["  ".join([f"{'ROI':<{width}}"] + [f"{h:>10}" for _, h in _TABLE])]
    for r in rows:
        cells = [f"{r[k]:>10.4g}" if isinstance(r.get(k), float) and math.isfinite(r[k]) else f"{'-':>10}"
                 for k, _ in _TABLE]
        lines.append("  ".join([f"{r['name']:<{width}}"] + cells))
    return "\n".join(lines)


def run(args) -> int:
    from COMPASSLib import io

    dose_image = io.read_volume(args.dose, "dose")
    masks = io.read_structures([args.structures], dose_image, rois=args.roi)
    rows = roi_metrics(dose_image, masks, vx_gy=tuple(args.vx))
    if args.json:
        print(json.dumps({"rois": rows}, indent=2))
    else:
        print(_table(rows))
    return 0
