"""Voxelwise texture maps: COMPASS (torch) vs pyradiomics voxel-based extraction, same inputs, one run.

    .venv/bin/python Testing/Benchmarks/bench_texture_maps.py [--quick] [--pyrad-voxels 100]

Inputs: a smooth dose field with a hot spot on a 3 mm grid, BED with alpha/beta 3 Gy; organ ROIs of
about 2k, 10k and 40k voxels; kernel radius 1 and 2; bin widths giving about 40 and 100 grey levels in
the ROI; the first-order class and the full GLCM class (24 features, MCC included).

pyradiomics (3.0.1) is timed honestly per voxel: its feature class is built on the full ROI (the
discretisation and kernels see the whole organ) and then `_calculateFeatures` - the body of its
own voxel loop - runs on its first batches of voxelBatch=100 kernel centres. Per-voxel time = batch
time / voxels (its once-per-ROI class set-up, binning included, is left out). COMPASS computes the
whole map; its per-voxel time is the time of its chunk loop (from progress(0, ...) to progress(1, ...):
the once-per-ROI set-up and the conversion of the results to images left out likewise) / ROI
voxels. Both on one CPU thread. The ratio is per-voxel pyradiomics / COMPASS, printed beside
issue 6's goal (>= 100x at radius 1, >= 30x at radius 2). "COMPASS map s" is the whole call, and
"map ratio" compares whole maps: pyradiomics' set-up + every ROI voxel at its timed rate, over
COMPASS's whole call.
The pyradiomics values of the timed voxels are also checked against the COMPASS map (max rel. diff).
Last, the whole-map time of a heart-sized ROI (~38k voxels, radius 1, ~40 grey levels; goal < 1 s
per fraction) for the CLI's default maps, each class and everything (best of 3), on one thread
and on all cores. COMPASS maps are timed --repeats times and pyradiomics' voxels --pyrad-repeats
times; the best of each is kept (both sides alike: the shared machine's noise only adds time).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from COMPASSLib.dose import bed  # noqa: E402
from COMPASSLib.features.texture_maps import available_features, texture_maps  # noqa: E402


# issue 6: speed-up over pyradiomics wanted on one CPU thread, by kernel radius
GOAL_RATIO = {1: 100, 2: 30}


def make_case(target_voxels: int, seed: int = 0):
    """BED (a/b 3) of one 2.5 Gy-scale fraction on a 3 mm grid, and an ellipsoid of ~target voxels."""
    rng = np.random.default_rng(seed)
    semi = (target_voxels * 3 / (4 * np.pi * 1.0 * 1.2 * 1.4)) ** (1 / 3)
    axes = np.array([1.0, 1.2, 1.4]) * semi
    shape = tuple(int(2 * a + 8) for a in axes)
    z, y, x = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    organ = (z / axes[0]) ** 2 + (y / axes[1]) ** 2 + (x / axes[2]) ** 2 < 1
    dose = (2.0 * np.exp(-((z - 2) ** 2 + (y - 3) ** 2 + (x + 4) ** 2) / (2 * (0.6 * semi) ** 2))
            + 1.2 * np.exp(-((z + 3) ** 2 + (y + 2) ** 2 + (x - 5) ** 2) / 8.0)
            + rng.normal(0, 0.03, shape)).clip(min=0)
    bed_gy = bed(dose * 1.5, 3.0).astype(np.float32)
    image = sitk.GetImageFromArray(bed_gy)
    image.SetSpacing((3.0, 3.0, 3.0))
    mask = sitk.GetImageFromArray(organ.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask, bed_gy[organ]


def time_pyradiomics(cls_name, image, mask, radius, bin_width, n_voxels, batch=100, repeats=2):
    import radiomics
    from radiomics import firstorder, glcm

    radiomics.setVerbosity(logging.ERROR)
    cls = {"firstorder": firstorder.RadiomicsFirstOrder, "glcm": glcm.RadiomicsGLCM}[cls_name]
    t0 = time.perf_counter()
    fc = cls(image, mask, voxelBased=True, kernelRadius=radius, binWidth=bin_width, force2D=False,
             voxelBatch=batch)
    fc.enableAllFeatures()
    setup = time.perf_counter() - t0
    coords = fc.labelledVoxelCoordinates
    per_voxel = float("inf")
    for _ in range(repeats):
        values = {}
        t0 = time.perf_counter()
        done = 0
        while done < min(n_voxels, coords.shape[1]):
            vc = coords[:, done:done + batch]
            for ok, name, value in fc._calculateFeatures(vc):
                if ok:
                    values.setdefault(name, []).append(np.asarray(value, dtype=float).reshape(-1))
            done += vc.shape[1]
        per_voxel = min(per_voxel, (time.perf_counter() - t0) / done)
    values = {k: np.concatenate(v) for k, v in values.items()}
    return per_voxel, setup, coords[:, :done], values, fc.coefficients["Ng"], len(fc.coefficients["grayLevels"])


def timed_map(image, mask, feats, radius, width, repeats, device="cpu"):
    """(maps, whole-call seconds, compute seconds), best of `repeats`. Compute = from texture_maps'
    progress(0, ...) before its first chunk to progress(1, ...) after the last: the per-voxel work,
    without the once-per-ROI set-up (discretisation, padding) and the conversion of the results to
    images - the parts left out of pyradiomics' per-voxel time too."""
    import torch

    best_call = best_compute = float("inf")
    for _ in range(repeats):
        marks = {}

        def progress(fraction_done, message):
            if device != "cpu":
                torch.cuda.synchronize()
            marks["start" if fraction_done == 0 else "end"] = time.perf_counter()

        t0 = time.perf_counter()
        maps = texture_maps(image, mask, feats, radius=radius, bin_width=width, threads=1, device=device,
                            progress=progress)
        best_call = min(best_call, time.perf_counter() - t0)
        best_compute = min(best_compute, marks["end"] - marks["start"])
    return maps, best_call, best_compute


def max_diffs(ours: dict, ref: dict, coords, cls_name):
    """(max relative difference over all features but MCC, max absolute difference of MCC) at the
    voxels pyradiomics computed; relative to max(|value|, 1e-2). inf if NaN patterns differ."""
    worst, mcc = 0.0, 0.0
    for name, v in ref.items():
        a = sitk.GetArrayFromImage(ours[f"{cls_name}:{name}"])[tuple(coords)]
        both = np.isfinite(a) & np.isfinite(v)
        if name in ("JointAverage", "MCC") and not both.all():
            continue  # pyradiomics' batch semantics at voxels with empty directions (see docs)
        if not np.array_equal(np.isfinite(a), np.isfinite(v)):
            return float("inf"), float("inf")
        if not both.any():
            continue
        if name == "MCC":
            mcc = float(np.abs(a - v).max())
            continue
        d = np.abs(a[both] - v[both]) / np.maximum(np.abs(v[both]), 1e-2)
        worst = max(worst, float(d.max()))
    return worst, mcc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one ROI size (10k), fewer configurations")
    p.add_argument("--pyrad-voxels", type=int, default=100, help="voxels timed in pyradiomics per case")
    p.add_argument("--sizes", default="2000,10000,40000")
    p.add_argument("--repeats", type=int, default=3, help="COMPASS maps timed this many times (best kept)")
    p.add_argument("--pyrad-repeats", type=int, default=2,
                   help="pyradiomics' voxels timed this many times (best kept)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    sizes = [10000] if args.quick else [int(s) for s in args.sizes.split(",")]
    radii = (1, 2)
    levels = (40, 100)
    classes = ("firstorder", "glcm")
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, 1 CPU thread; pyradiomics timed on {args.pyrad_voxels} voxels "
          f"per case (voxelBatch 100)")
    print("cuda available: " + torch.cuda.get_device_name(0) if cuda else "cuda not available")
    header = (f"{'class':10s} {'ROI vox':>8s} {'r':>2s} {'Ng':>4s} {'pyrad us/vox':>13s} {'COMPASS us/vox':>15s} "
              f"{'ratio':>8s} {'goal':>5s} {'met':>4s} {'COMPASS map s':>14s} {'map ratio':>10s} {'max rel diff':>13s} "
              f"{'MCC abs diff':>12s}")
    if cuda:
        header += f" {'cuda us/vox':>12s} {'cuda ratio':>11s} {'cpu-cuda diff':>13s}"
    print(header)
    # warm-up: torch's first call in a process pays one-off initialisation; time steady state
    w_image, w_mask, _ = make_case(500)
    texture_maps(w_image, w_mask, ["firstorder:*", "glcm:*"], radius=1, bin_width=0.5, threads=1)
    for n in sizes:
        image, mask, vals = make_case(n)
        nroi = int(sitk.GetArrayFromImage(mask).sum())
        for target in levels:
            width = float((vals.max() - vals.min()) / (target - 0.5))
            for radius in radii:
                if args.quick and (radius, target) == (2, 100):
                    continue
                for cls_name in classes:
                    feats = [f"{cls_name}:*"]
                    ours, t_map, t_ours = timed_map(image, mask, feats, radius, width, args.repeats)
                    pv, setup, coords, ref, _ng, ng_present = time_pyradiomics(
                        cls_name, image, mask, radius, width, args.pyrad_voxels, repeats=args.pyrad_repeats)
                    ours_pv = t_ours / nroi
                    rel, mcc = max_diffs(ours, ref, coords, cls_name)
                    goal = GOAL_RATIO[radius]
                    # whole map: pyradiomics' set-up plus every ROI voxel at the timed rate
                    map_ratio = (setup + pv * nroi) / t_map
                    line = (f"{cls_name:10s} {nroi:8d} {radius:2d} {ng_present:4d} {pv * 1e6:13.1f} "
                            f"{ours_pv * 1e6:15.2f} {pv / ours_pv:8.1f} {goal:5d} "
                            f"{'yes' if pv / ours_pv >= goal else 'no':>4s} {t_map:14.3f} {map_ratio:10.1f} "
                            f"{rel:13.1e} {mcc:12.1e}")
                    if cuda:
                        timed_map(image, mask, feats, radius, width, 1, device="cuda")
                        gpu, _t_gpu_map, t_gpu = timed_map(image, mask, feats, radius, width, args.repeats,
                                                           device="cuda")
                        diff = max(float(np.nanmax(np.abs(sitk.GetArrayFromImage(gpu[k]) - sitk.GetArrayFromImage(ours[k]))
                                                   / np.maximum(np.abs(sitk.GetArrayFromImage(ours[k])), 1e-2)))
                                   for k in ours)
                        line += f" {t_gpu / nroi * 1e6:12.3f} {pv / (t_gpu / nroi):11.0f} {diff:13.1e}"
                    print(line, flush=True)
    print("features per class:", {k: len(v) for k, v in available_features().items()})
    if not args.quick:
        heart_map_times()


def heart_map_times(n_voxels=38000, target_levels=40):
    """Whole-map seconds for a heart-sized ROI at radius 1 (goal: < 1 s per fraction), best of 3."""
    image, mask, vals = make_case(n_voxels)
    width = float((vals.max() - vals.min()) / (target_levels - 0.5))
    glcm_all = [f"glcm:{n}" for n in available_features()["glcm"]]
    sets = {"CLI default (glcm:Contrast, glcm:JointEntropy, firstorder:Entropy)":
            ["glcm:Contrast", "glcm:JointEntropy", "firstorder:Entropy"],
            "firstorder:* (18 maps)": ["firstorder:*"],
            "glcm:* without MCC (23 maps)": [k for k in glcm_all if k != "glcm:MCC"],
            "glcm:MCC": ["glcm:MCC"],
            "glcm:* (24 maps)": ["glcm:*"],
            "all 42 maps": ["firstorder:*", "glcm:*"]}
    from COMPASSLib.features.texture_maps import discretise

    ng = len(np.unique(discretise(vals, width)))
    cores = os.cpu_count()
    print(f"heart-sized map, {int(sitk.GetArrayFromImage(mask).sum())} voxels, radius 1, Ng {ng} "
          f"(whole map, best of 3; 1 thread, then {cores} threads, one per core):")
    for label, feats in sets.items():
        line = f"  {label:70s}"
        for threads in (1, cores):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                texture_maps(image, mask, feats, radius=1, bin_width=width, threads=threads)
                best = min(best, time.perf_counter() - t0)
            line += f" {best:7.3f} s {'< 1 s ' if best < 1 else '>= 1 s'}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
