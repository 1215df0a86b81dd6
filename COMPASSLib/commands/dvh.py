"""`compass dvh`: DVH metrics of every ROI of a structure set on a dose grid."""
from __future__ import annotations

import argparse
import json
import math

HELP = "DVH metrics (volume, min/max/mean, D2cc, D95, ...) of ROIs on a dose grid"
DESCRIPTION = (
    "Cumulative DVH metrics of the ROIs of STRUCTURES (RTSTRUCT, labelmap or .seg.nrrd) in DOSE "
    "(RTDOSE or NRRD/NIfTI in Gy). Without a CT the dose grid is the reference grid: contours are "
    "rasterised onto it. Dxcc is the minimum dose to the hottest x cc; Dx% the same for x% of the ROI. "
    "An RTSTRUCT's ROIs are sampled finer than the dose grid, small ones most, with the shape interpolated "
    "between contour planes (--supersample, --between-planes; docs/features.md).")

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
                between_planes="interpolated") -> list:
    """One dict per ROI: name, organ (canonical or None), the DVH metrics, gEUD with the organ's n
    (Resources/organs.yaml) when the ROI is a known organ, `supersample` (sub-voxels per voxel side) and
    `between_planes` ('interpolated', 'slab', or 'voxels' for whole voxels). `contours`: ROI name ->
    RTSTRUCT contours (then `supersample` 'auto' or N applies); without them the DVH counts the masks'
    whole voxels. Masks and sub-voxels are on the dose grid."""
    from COMPASSLib import dose, memory, resources
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
        rows.append({"name": name, "organ": organ, **dvh.metrics(vx_gy=vx_gy, geud_n=n), "supersample": factor,
                     "between_planes": how})
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


def run(args) -> int:
    from COMPASSLib import io

    dose_image = io.read_volume(args.dose, "dose")
    masks, contours = _read(args, dose_image)
    rows = roi_metrics(dose_image, masks, vx_gy=tuple(args.vx), contours=contours, supersample=args.supersample,
                       between_planes=args.between_planes or "interpolated")
    if args.json:
        print(json.dumps({"rois": rows}, indent=2))
    else:
        print(_table(rows))
    return 0
