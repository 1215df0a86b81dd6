"""`compass dvh`: DVH metrics of every ROI of a structure set on a dose grid."""
from __future__ import annotations

import argparse
import json
import math
import sys

HELP = "DVH metrics (volume, min/max/mean, D2cc, D95, ...) of ROIs on a dose grid"
DESCRIPTION = (
    "Cumulative DVH metrics of the ROIs of STRUCTURES (RTSTRUCT, labelmap or .seg.nrrd) in DOSE "
    "(RTDOSE or NRRD/NIfTI in Gy). Without a CT the dose grid is the reference grid: contours are "
    "rasterised onto it. Dxcc is the minimum dose to the hottest x cc; Dx% the same for x% of the ROI. "
    "An RTSTRUCT's ROIs are sampled finer than the dose grid, small ones most, with the shape interpolated "
    "between contour planes (--supersample, --between-planes; docs/features.md). --compare-tps checks each "
    "DVH against the planning system's own, stored in the RTDOSE.")

# Shown in the table, in order; --json prints every metric.
_TABLE = (("volume_cc", "Volume cc"), ("min_gy", "Min Gy"), ("max_gy", "Max Gy"), ("mean_gy", "Mean Gy"),
          ("d2cc_gy", "D2cc Gy"), ("d0_1cc_gy", "D0.1cc Gy"), ("d95_gy", "D95 Gy"), ("d98_gy", "D98 Gy"))


BETWEEN_PLANES = ("interpolated", "slab")


def supersample_arg(text: str):
    """--supersample: 'auto' or a whole number 1..SUPERSAMPLE_MAX."""
    from COMPASSLib.dose import SUPERSAMPLE_MAX

    if text.strip().lower() == "auto":
        return "auto"
    try:
        factor = int(text)
    except ValueError:
        factor = 0
    if not 1 <= factor <= SUPERSAMPLE_MAX:
        raise argparse.ArgumentTypeError(f"use 'auto' or a whole number 1..{SUPERSAMPLE_MAX} (got {text!r})")
    return factor


def gamma_arg(text: str):
    """--gamma: two positive numbers 'DOSE%,VOLUME%'."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or not all(v > 0 and math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"use two positive numbers DOSE%,VOLUME% such as 1,1 (got {text!r})")
    return values


def add_arguments(parser):
    from COMPASSLib.dose import SUPERSAMPLE_AUTO, SUPERSAMPLE_AUTO_LARGE

    auto = ", ".join(f"{f} under {v:g} cc" for v, f in SUPERSAMPLE_AUTO) + f", else {SUPERSAMPLE_AUTO_LARGE}"
    parser.add_argument("--dose", required=True, nargs="+", metavar="DOSE",
                        help="dose in Gy: RTDOSE file(s) (summed) or one NRRD/NIfTI volume")
    parser.add_argument("--structures", required=True, metavar="STRUCTURES",
                        help="RTSTRUCT file, labelmap or Slicer .seg.nrrd")
    parser.add_argument("--roi", action="append", metavar="NAME", help="only this ROI (repeatable)")
    parser.add_argument("--vx", action="append", type=float, default=[], metavar="GY",
                        help="also report Vx (cc and %%) at this dose (repeatable)")
    parser.add_argument("--supersample", default="auto", type=supersample_arg, metavar="auto|N",
                        help=f"in-plane sub-voxels per voxel side for RTSTRUCT contours, dose interpolated "
                             f"between voxel centres (auto: {auto}; 1: whole voxels by their centre)")
    parser.add_argument("--between-planes", choices=BETWEEN_PLANES, metavar="|".join(BETWEEN_PLANES),
                        help="with --supersample above 1: 'interpolated' (default) samples the ROI as a solid, its "
                             "shape interpolated between contour planes and closing half a plane spacing beyond "
                             "the outermost ones, dose also interpolated between slices; 'slab': each plane "
                             "fills half a spacing above and below on the dose grid's slices (dicompyler-core)")
    parser.add_argument("--compare-tps", action="store_true",
                        help="compare every ROI's DVH with the planning system's own DVH stored in the RTDOSE "
                             "(its DVHSequence): largest volume difference and DVH gamma (docs/features.md)")
    parser.add_argument("--gamma", type=gamma_arg, metavar="DOSE%,VOLUME%",
                        help="with --compare-tps: the DVH gamma's criteria, dose in %% of --reference-dose and "
                             "volume in volume-%% points (default 1,1)")
    parser.add_argument("--reference-dose", type=float, metavar="GY",
                        help="with --compare-tps: the dose the gamma's dose criterion is a percentage of (the "
                             "prescription; default: the dose grid's maximum)")
    parser.add_argument("--json", action="store_true", help='print {"rois": [...]} as JSON')


def _factor(supersample, mask, contours) -> int:
    """Sub-voxels per voxel side for one ROI: 1 without contours, the auto rule on its whole-voxel volume."""
    from COMPASSLib import dose

    if contours is None:
        return 1
    if supersample == "auto":
        return dose.auto_supersample(_voxels(mask) * dose.voxel_volume_cc(mask))
    return int(supersample)


def roi_metrics(dose_image, masks: dict, vx_gy=(), contours=None, supersample=1,
                between_planes="interpolated", planning=None, gamma=(1.0, 1.0), reference_dose_gy=None) -> list:
    """One dict per ROI: name, organ (canonical or None), the DVH metrics, gEUD with the organ's n
    (Resources/organs.yaml) when the ROI is a known organ, `supersample` (sub-voxels per voxel side) and
    `between_planes` ('interpolated', 'slab', or 'voxels' for whole voxels). `contours`: ROI name ->
    RTSTRUCT contours (then `supersample` 'auto' or N applies); without them the DVH counts the masks'
    whole voxels. Masks and sub-voxels are on the dose grid. `planning`: ROI name -> the planning system's
    DVH (io.planning_dvh); each ROI then gets `planning_system` (dvh_agreement.agreement with the `gamma`
    criteria against `reference_dose_gy`, or None where the planning system has no DVH of it)."""
    from COMPASSLib import dose, memory, resources
    from COMPASSLib.dvh_agreement import agreement
    from COMPASSLib.errors import DoseError
    from COMPASSLib.io.rtstruct import subvoxel_centres
    from COMPASSLib.io.shape_interpolation import BetweenPlanes

    if between_planes not in BETWEEN_PLANES:
        raise DoseError(f"between_planes must be one of {', '.join(BETWEEN_PLANES)} (got {between_planes!r})")
    rows = []
    for name, mask in masks.items():
        organ = resources.canonical_organ(name)
        n = resources.geud_n(organ) if organ else None
        factor = _factor(supersample, mask, None if contours is None else contours.get(name))
        how = between_planes if factor > 1 else "voxels"
        if factor > 1:
            solid = (BetweenPlanes(contours[name], dose_image, factor, dose.sub_slices(factor), name)
                     if how == "interpolated" else None)   # nothing is sampled before the DVH iterates
            thickness = solid.slice_fraction if solid is not None else 1.0
            # the samples' values, their concatenation and the DVH's sorted copy: 24 bytes a sample
            memory.check(f"DVH of ROI {name!r} at {factor} x {factor} sub-voxels",
                         _voxels(mask) * factor ** 2 / thickness * 24, hint="use a smaller --supersample",
                         error=DoseError)
            samples = solid if solid is not None else subvoxel_centres(contours[name], dose_image, factor, name)
            dvh = dose.supersampled_dvh(dose_image, samples, factor, slice_fraction=thickness)
        else:
            dvh = dose.dvh(dose_image, mask)
        row = {"name": name, "organ": organ, **dvh.metrics(vx_gy=vx_gy, geud_n=n), "supersample": factor,
               "between_planes": how}
        if planning is not None:
            theirs = planning.get(name)
            row["planning_system"] = (None if theirs is None else
                                      agreement(dvh, theirs, reference_dose_gy, dose_pct=gamma[0], volume_pct=gamma[1]))
        rows.append(row)
    return rows


def _voxels(mask) -> int:
    import SimpleITK as sitk

    return int(sitk.GetArrayViewFromImage(mask).sum(dtype="int64"))


def _table(rows) -> str:
    width = max([len("ROI")] + [len(r["name"]) for r in rows])
    lines = ["  ".join([f"{'ROI':<{width}}"] + [f"{h:>10}" for _, h in _TABLE])]
    for r in rows:
        cells = [f"{r[k]:>10.4g}" if isinstance(r.get(k), float) and math.isfinite(r[k]) else f"{'-':>10}"
                 for k, _ in _TABLE]
        lines.append("  ".join([f"{r['name']:<{width}}"] + cells))
    compared = [r for r in rows if r.get("planning_system")]
    if compared:
        c = compared[0]["planning_system"]["criteria"]
        lines.append(f"against the planning system's DVHs (DVH gamma {c['dose_pct']:g} % of "
                     f"{c['reference_dose_gy']:.4g} Gy = {c['dose_tolerance_gy']:.4g} Gy, {c['volume_pct']:g} volume-%):")
        lines.append("  ".join([f"{'ROI':<{width}}", f"{'TPS cc':>10}", f"{'max dV pp':>10}", f"{'at Gy':>10}",
                                f"{'gamma max':>10}", f"{'pass %':>10}"]))
        for r in compared:
            p = r["planning_system"]
            cc = f"{p['volume_cc']:>10.4g}" if p["volume_cc"] is not None else f"{'-':>10}"
            lines.append("  ".join([f"{r['name']:<{width}}", cc, f"{p['max_volume_diff_pp']:>10.3g}",
                                    f"{p['at_dose_gy']:>10.4g}", f"{p['gamma_max']:>10.3g}",
                                    f"{100 * p['gamma_pass_rate']:>10.4g}"]))
    missing = [r["name"] for r in rows if "planning_system" in r and r["planning_system"] is None]
    if missing:
        lines.append("no planning-system DVH for: " + ", ".join(missing))
    sampled = [f"{r['name']} {r['supersample']}" for r in rows if r.get("supersample", 1) > 1]
    if sampled:
        how = sorted({r["between_planes"] for r in rows if r.get("supersample", 1) > 1})
        lines.append("in-plane sub-voxels per voxel side (--supersample): " + ", ".join(sampled)
                     + f"; between contour planes: {', '.join(how)}")
    return "\n".join(lines)


def _read(args, dose_image):
    """(masks, contours): ROI name -> contours when STRUCTURES is an RTSTRUCT and sub-voxels may be wanted
    (one read for both), else None. A labelmap has only voxels: asking for supersampling then is an
    InputError rather than a silent whole-voxel DVH."""
    from COMPASSLib import io
    from COMPASSLib.errors import InputError
    from COMPASSLib.io.images import image_suffix

    if image_suffix(args.structures) is not None and args.supersample not in ("auto", 1):
        raise InputError(f"--supersample {args.supersample} needs contours (an RTSTRUCT); this is a labelmap, "
                         "whose DVH counts whole voxels (use --supersample auto or 1)", file=args.structures)
    if image_suffix(args.structures) is not None and args.between_planes is not None:
        raise InputError(f"--between-planes {args.between_planes} needs contours (an RTSTRUCT); this is a "
                         "labelmap, whose DVH counts whole voxels", file=args.structures)
    if args.supersample == 1:
        return io.read_structures([args.structures], dose_image, rois=args.roi), None
    return io.read_structures([args.structures], dose_image, rois=args.roi, with_contours=True)


def _check_compare_options(args):
    """--compare-tps and its options, checked before anything is read."""
    from COMPASSLib.errors import InputError
    from COMPASSLib.io.images import image_suffix

    if not args.compare_tps:
        if args.gamma is not None or args.reference_dose is not None:
            raise InputError("--gamma and --reference-dose set the comparison with the planning system's DVHs: "
                             "add --compare-tps")
        return
    if len(args.dose) != 1 or image_suffix(args.dose[0]) is not None:
        raise InputError("--compare-tps needs the one RTDOSE whose DVHSequence holds the planning system's DVHs "
                         f"(got {len(args.dose)} dose file(s): {', '.join(map(str, args.dose))})")
    if image_suffix(args.structures) is not None:
        raise InputError("--compare-tps needs the RTSTRUCT the planning system's DVHs refer to by ROI number; "
                         "this is a labelmap", file=args.structures)
    if args.reference_dose is not None and not (args.reference_dose > 0 and math.isfinite(args.reference_dose)):
        raise InputError(f"--reference-dose must be a positive dose in Gy (got {args.reference_dose:g})")


def _planning(args, dose_image, masks):
    """ROI name -> the planning system's DVH, for --compare-tps; and the gamma's reference dose."""
    import SimpleITK as sitk

    from COMPASSLib.errors import InputError
    from COMPASSLib.io.planning_dvh import read_planning_dvhs
    from COMPASSLib.io.rtstruct import roi_numbers

    curves, skipped = read_planning_dvhs(args.dose[0])
    if not curves:
        why = "; ".join(f"ROI {k}: {v}" for k, v in skipped.items())
        raise InputError("the RTDOSE holds no planning-system DVH COMPASS can read"
                         + (f" ({why})" if why else " (no DVHSequence)"), file=args.dose[0])
    names = roi_numbers(args.structures)
    for number, why in skipped.items():
        print(f"planning-system DVH of ROI {names.get(number, number)!r} not compared: {why}", file=sys.stderr)
    for number in sorted(set(curves) - set(names)):
        print(f"planning-system DVH of ROI number {number} not compared: the RTSTRUCT has no such ROI "
              "(another structure set?)", file=sys.stderr)
    by_name = {names[k]: c for k, c in curves.items() if k in names and names[k] in masks}
    reference = args.reference_dose
    if reference is None:
        reference = float(sitk.GetArrayViewFromImage(dose_image).max())
    return by_name, reference


def run(args) -> int:
    from COMPASSLib import io

    _check_compare_options(args)
    dose_image = io.read_volume(args.dose, "dose")
    masks, contours = _read(args, dose_image)
    planning, reference = _planning(args, dose_image, masks) if args.compare_tps else (None, None)
    rows = roi_metrics(dose_image, masks, vx_gy=tuple(args.vx), contours=contours, supersample=args.supersample,
                       between_planes=args.between_planes or "interpolated", planning=planning,
                       gamma=args.gamma or (1.0, 1.0), reference_dose_gy=reference)
    if args.json:
        print(json.dumps({"rois": rows}, indent=2))
    else:
        print(_table(rows))
    return 0
