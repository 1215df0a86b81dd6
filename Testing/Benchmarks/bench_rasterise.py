"""Rasteriser benchmark: COMPASS's scanline point-in-polygon against matplotlib.path.Path.contains_points
(the in-plane test dicompyler-core uses), measured side by side in one process on the same ROIs.

Case: every ROI of the dicompyler-core example plan (../shared/data/dicompyler_example/rtss.dcm) rasterised on
the RTDOSE grid (194 x 129 x 98) by COMPASSLib.io.rtstruct.read_rtstruct. The reference run is the same call
with only the per-polygon plane mask (rtstruct._polygon_mask) swapped for Path.contains_points over the
plane's voxel centres, so both share parsing, plane grouping, XOR of holes and slab filling, and the ratio
isolates the point-in-polygon method. Per-ROI times are those of rtstruct.rasterise_roi; the masks of the
two runs must be identical (the voxel mismatch count is printed). Not a test: it prints the figures.

    .venv/bin/python Testing/Benchmarks/bench_rasterise.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("COMPASS_SHARED_DATA", REPO.parent / "shared" / "data")) / "dicompyler_example"


def _contains_points_mask():
    """A drop-in for rtstruct._polygon_mask built on matplotlib's Path.contains_points. The voxel-centre
    list of a plane is made once per plane shape, as dicompyler-core makes its dose-grid points once."""
    from matplotlib.path import Path as MplPath

    centres = {}

    def polygon_mask(polygon_ij, shape_yx):
        if shape_yx not in centres:
            jj, ii = np.mgrid[0:shape_yx[0], 0:shape_yx[1]]
            centres[shape_yx] = np.column_stack([ii.ravel(), jj.ravel()]).astype(np.float64)
        mask = MplPath(polygon_ij).contains_points(centres[shape_yx]).reshape(shape_yx)
        return mask if mask.any() else None

    return polygon_mask


def rasterise_all(reference, polygon_mask=None) -> tuple:
    """(ROI name -> mask array, ROI name -> rasterise_roi seconds), optionally with another plane mask."""
    import SimpleITK as sitk

    from COMPASSLib.io import rtstruct

    seconds = {}
    originals = rtstruct.rasterise_roi, rtstruct._polygon_mask

    def timed_rasterise(contours, ref, name="ROI", *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return originals[0](contours, ref, name, *args, **kwargs)
        finally:
            seconds[name] = time.perf_counter() - t0

    rtstruct.rasterise_roi = timed_rasterise
    if polygon_mask is not None:
        rtstruct._polygon_mask = polygon_mask
    try:
        masks = rtstruct.read_rtstruct(DATA / "rtss.dcm", reference)
    finally:
        rtstruct.rasterise_roi, rtstruct._polygon_mask = originals
    return {name: sitk.GetArrayFromImage(m) for name, m in masks.items()}, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each method (median reported)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    logging.disable(logging.WARNING)  # the empty 'Areola' ROI warns on every run
    import matplotlib

    from COMPASSLib.io.rtdose import read_rtdose

    reference = read_rtdose(DATA / "rtdose.dcm")
    contains_points = _contains_points_mask()
    print(f"data: {DATA / 'rtss.dcm'} on the RTDOSE grid {reference.GetSize()}; matplotlib {matplotlib.__version__}")
    rasterise_all(reference)  # warm-up: imports and the file cache
    own_runs, ref_runs = [], []
    for i in range(args.repeat):  # alternate, so load from other processes hits both alike
        ref_runs.append(rasterise_all(reference, contains_points))
        own_runs.append(rasterise_all(reference))
        print(f"run {i + 1}/{args.repeat}: COMPASS {sum(own_runs[-1][1].values()):.3f} s, "
              f"contains_points {sum(ref_runs[-1][1].values()):.3f} s", flush=True)

    own_masks, ref_masks = own_runs[-1][0], ref_runs[-1][0]
    print(f"\nper ROI: median seconds of rasterise_roi\n  {'ROI':<16} {'voxels':>8} {'COMPASS s':>9} "
          f"{'contains_points s':>17} {'ratio':>7} {'mismatch':>8}")
    for name in own_runs[-1][1]:
        own = statistics.median(r[1][name] for r in own_runs)
        ref = statistics.median(r[1][name] for r in ref_runs)
        a, b = own_masks.get(name), ref_masks.get(name)  # None: left out as empty on the grid
        if a is None and b is None:
            voxels = mismatch = 0
        else:
            a = np.zeros_like(b) if a is None else a
            b = np.zeros_like(a) if b is None else b
            voxels, mismatch = int(a.sum()), int((a != b).sum())
        print(f"  {name:<16} {voxels:8d} {own:9.4f} {ref:17.4f} {own / ref:7.3f} {mismatch:8d}")
    own_total = statistics.median(sum(r[1].values()) for r in own_runs)
    ref_total = statistics.median(sum(r[1].values()) for r in ref_runs)
    print(f"\nmedian of {args.repeat} runs, all ROIs: COMPASS {own_total:.3f} s, contains_points {ref_total:.3f} s")
    print(f"ratio COMPASS/contains_points = {own_total / ref_total:.4f}  (speed-up {ref_total / own_total:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
