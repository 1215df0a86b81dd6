"""DVH benchmark: COMPASS against dicompyler-core 0.5.6, measured side by side in one run on the same files.

The case is the dicompyler-core example plan (../shared/data/dicompyler_example: rtss.dcm with 10 ROIs,
rtdose.dcm 194 x 129 x 98). One run of each implementation reads RTSTRUCT + RTDOSE and computes the DVH
metrics of every ROI on the dose grid (no interpolation):
- reference: dicompyler-core's dvhcalc.get_dvh per ROI (matplotlib.path point-in-polygon per plane),
  run in its own virtual environment (it needs pydicom < 3; COMPASS's .venv has pydicom 3) as a
  subprocess that prints JSON;
- COMPASS: read_rtdose + read_rtstruct (rasterise all ROIs on the dose grid) + dose.dvh metrics, in-process.
Runs alternate (reference, COMPASS, reference, ...) so load from other processes hits both alike; the
medians are reported. It also prints the per-ROI volume/mean/max differences between the two, a
cross-check of the rasteriser and DVH on identical input.

The reference's environment is created once (needs PyPI) and reused: REFERENCE_VENV below, or --reference-venv.
When it cannot be created, the script says so and falls back to the figure recorded in
EXPECTED_VALUES.md (7.9 s on this kind of 2-core machine), which is then NOT a side-by-side measurement.
Not a test: it prints the figures.

    .venv/bin/python Testing/Benchmarks/bench_dvh.py [--repeat 3] [--reference-venv PATH] [--no-reference]
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("COMPASS_SHARED_DATA", REPO.parent / "shared" / "data")) / "dicompyler_example"
REFERENCE_VENV = REPO / ".venv-bench-dicompyler"
RECORDED_REFERENCE_S = 7.9  # all 10 ROIs, dicompyler-core 0.5.6, 2 cores (EXPECTED_VALUES.md)

# dicompyler-core 0.5.6 imports pydicom.dicomio.read_file, which pydicom 3 removed. numpy and matplotlib
# (whose Path.contains_points does the reference's rasterising) are pinned to COMPASS's own versions
# at run time, so the ratio compares the algorithms and not two numpy builds.
REFERENCE_PINS = ("dicompyler-core==0.5.6", "pydicom==2.4.5", "six==1.17.0")
SAME_AS_COMPASS = ("numpy", "matplotlib")

# The same metrics on both sides (COMPASS's DVH.metrics defaults plus V10Gy), so "DVH metrics" costs alike.
DX_PCT, DX_CC, VX_GY = (2, 50, 95, 98), (0.1, 2), (10,)

# Runs inside the reference environment: argv = rtss, rtdose, then the metric lists as JSON.
_REFERENCE_DRIVER = r"""
import json, logging, sys, time
logging.disable(logging.WARNING)  # 'dose plane not found' for BODY contours outside the grid, every run
t_import = time.perf_counter()
import importlib.metadata as md
from dicompylercore import dicomparser, dvhcalc
t0 = time.perf_counter()
rtss = dicomparser.DicomParser(sys.argv[1])
rtdose = dicomparser.DicomParser(sys.argv[2])
rois = rtss.GetStructures()
t1 = time.perf_counter()
dx_pct, dx_cc, vx_gy = json.loads(sys.argv[3])
out = []
for number, roi in rois.items():
    s0 = time.perf_counter()
    d = dvhcalc.get_dvh(rtss.ds, rtdose.ds, number)
    empty = d.counts.size <= 1 or not d.counts.any()
    if not empty:  # the same statistics COMPASS computes, inside the timed part
        [d.statistic("D%g" % p) for p in dx_pct]
        [d.statistic("D%gcc" % v) for v in dx_cc]
        [d.statistic("V%gGy" % x) for x in vx_gy]
    out.append({"number": number, "name": roi["name"], "seconds": time.perf_counter() - s0,
                "volume_cc": None if empty else float(d.volume), "mean_gy": None if empty else float(d.mean),
                "max_gy": None if empty else float(d.max)})
t2 = time.perf_counter()
print(json.dumps({"read_s": t1 - t0, "total_s": t2 - t0, "rois": out,
                  "versions": {n: md.version(n) for n in ("dicompyler-core", "pydicom", "numpy", "matplotlib")}}))
"""


# --------------------------------------------------------------------------- reference environment

def _reference_requirements() -> list:
    return list(REFERENCE_PINS) + [f"{name}=={importlib.metadata.version(name)}" for name in SAME_AS_COMPASS]


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_reference_venv(venv: Path) -> tuple:
    """(python of the reference environment, None) or (None, why not). Created once; a stamp file with the
    requirement list marks a complete install, so a changed pin or an interrupted install rebuilds it."""
    requirements = _reference_requirements()
    stamp = venv / "bench-requirements.txt"
    python = _venv_python(venv)
    if stamp.is_file() and stamp.read_text().split() == requirements and python.exists():
        return python, None
    if venv.exists() and not (venv / "pyvenv.cfg").exists() and (not venv.is_dir() or any(venv.iterdir())):
        return None, f"{venv} exists and is not a virtual environment (left alone)"
    print(f"creating the reference environment {venv} ({' '.join(requirements)}) ...", flush=True)
    steps = ([sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--retries", "1",
              "--timeout", "20", *requirements])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"{step[2]} failed: {e}"
        if done.returncode != 0:
            tail = [line for line in done.stderr.splitlines() if not line.startswith("WARNING: Location")]
            return None, f"'{' '.join(step[1:4])} ...' failed (exit {done.returncode}): " + " | ".join(tail[-3:])
    stamp.write_text("\n".join(requirements) + "\n")  # last: only a finished install counts
    return python, None


def reference_run(python: Path) -> dict:
    cmd = [str(python), "-c", _REFERENCE_DRIVER, str(DATA / "rtss.dcm"), str(DATA / "rtdose.dcm"),
           json.dumps([DX_PCT, DX_CC, VX_GY])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"reference driver failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["rois"] = {r["name"]: r for r in result["rois"]}
    return result


# --------------------------------------------------------------------------- COMPASS

def compass_run() -> dict:
    from COMPASSLib import dose
    from COMPASSLib.io import rtstruct
    from COMPASSLib.io.rtdose import read_rtdose

    # per-ROI rasterising time, measured inside the one read_rtstruct call that rasterises every ROI
    rasterise_s = {}
    rasterise_roi = rtstruct.rasterise_roi

    def timed_rasterise(contours, reference, name="ROI", *args, **kwargs):
        s0 = time.perf_counter()
        try:
            return rasterise_roi(contours, reference, name, *args, **kwargs)
        finally:
            rasterise_s[name] = time.perf_counter() - s0

    rtstruct.rasterise_roi = timed_rasterise
    try:
        t0 = time.perf_counter()
        dose_image = read_rtdose(DATA / "rtdose.dcm")
        masks = rtstruct.read_rtstruct(DATA / "rtss.dcm", dose_image)
        t1 = time.perf_counter()
        rois = {}
        for name, mask in masks.items():
            s0 = time.perf_counter()
            m = dose.dvh(dose_image, mask).metrics(dx_pct=DX_PCT, dx_cc=DX_CC, vx_gy=VX_GY)
            rois[name] = {"seconds": time.perf_counter() - s0 + rasterise_s[name], "volume_cc": m["volume_cc"],
                          "mean_gy": m["mean_gy"], "max_gy": m["max_gy"]}
        t2 = time.perf_counter()
    finally:
        rtstruct.rasterise_roi = rasterise_roi
    for name, s in rasterise_s.items():  # ROIs left out as empty on the dose grid
        rois.setdefault(name, {"seconds": s, "volume_cc": None, "mean_gy": None, "max_gy": None})
    return {"read_rasterise_s": t1 - t0, "total_s": t2 - t0, "rois": rois}


# --------------------------------------------------------------------------- report

def _median_roi_seconds(runs: list, name: str):
    times = [r["rois"][name]["seconds"] for r in runs if name in r["rois"]]
    return statistics.median(times) if times else None


def _fmt(x, spec: str) -> str:
    return format(x, spec) if x is not None else "-".rjust(int(spec.split(".")[0].lstrip("+") or 1))


def print_report(ref_runs: list, own_runs: list) -> None:
    own_last = own_runs[-1]["rois"]
    ref_last = ref_runs[-1]["rois"] if ref_runs else {}
    names = list(ref_last) or list(own_last)
    names += [n for n in own_last if n not in names]

    print("\nper ROI: median seconds (COMPASS = its rasterising + DVH metrics; reference = get_dvh + statistics)")
    print(f"  {'ROI':<16} {'COMPASS s':>9} {'dicompyler s':>12} {'ratio':>7}")
    for name in names:
        own, ref = _median_roi_seconds(own_runs, name), _median_roi_seconds(ref_runs, name)
        ratio = own / ref if own is not None and ref else None
        print(f"  {name:<16} {_fmt(own, '9.4f')} {_fmt(ref, '12.4f')} {_fmt(ratio, '7.3f')}")

    own_total = statistics.median(r["total_s"] for r in own_runs)
    print(f"\nmedian of {len(own_runs)} runs, all ROIs, reading both files included:")
    print(f"  COMPASS          {own_total:8.3f} s (read + rasterise "
          f"{statistics.median(r['read_rasterise_s'] for r in own_runs):.3f} s)")
    if ref_runs:
        ref_total = statistics.median(r["total_s"] for r in ref_runs)
        print(f"  dicompyler-core  {ref_total:8.3f} s (read {statistics.median(r['read_s'] for r in ref_runs):.3f} s)"
              f"   measured now, same machine")
        print(f"  ratio COMPASS/dicompyler-core = {own_total / ref_total:.4f}  (speed-up {ref_total / own_total:.1f}x)")
        print("\ncross-check on the same files (COMPASS - dicompyler-core; dicompyler bins doses at 0.01 Gy: "
              "its max is the upper bin edge, its mean uses bin centres)")
        print(f"  {'ROI':<16} {'volume cc':>10} {'d volume':>9} {'d vol %':>8} {'mean Gy':>8} {'d mean':>8} "
              f"{'max Gy':>7} {'d max':>7}")
        for name in names:
            own, ref = own_last.get(name, {}), ref_last.get(name, {})
            if own.get("volume_cc") is None or ref.get("volume_cc") is None:
                print(f"  {name:<16} empty in {'both' if own.get('volume_cc') == ref.get('volume_cc') else 'one'}"
                      f" (COMPASS {own.get('volume_cc')}, dicompyler {ref.get('volume_cc')})")
                continue
            dv = own["volume_cc"] - ref["volume_cc"]
            print(f"  {name:<16} {ref['volume_cc']:10.3f} {dv:+9.3f} {100 * dv / ref['volume_cc']:+8.2f} "
                  f"{ref['mean_gy']:8.4f} {own['mean_gy'] - ref['mean_gy']:+8.4f} "
                  f"{ref['max_gy']:7.3f} {own['max_gy'] - ref['max_gy']:+7.3f}")
    else:
        print(f"  dicompyler-core  {RECORDED_REFERENCE_S:8.3f} s   RECORDED figure (EXPECTED_VALUES.md), NOT measured "
              "in this run")
        print(f"  ratio COMPASS/recorded dicompyler-core = {own_total / RECORDED_REFERENCE_S:.4f} "
              f"(speed-up {RECORDED_REFERENCE_S / own_total:.1f}x; not side by side, machine load may differ)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each implementation (median reported)")
    parser.add_argument("--reference-venv", type=Path, default=REFERENCE_VENV,
                        help="where the dicompyler-core environment is (created there once if absent)")
    parser.add_argument("--no-reference", action="store_true",
                        help="do not run dicompyler-core; compare with its recorded figure")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    logging.disable(logging.WARNING)  # the empty 'Areola' ROI warns on every run

    python, why_not = (None, "--no-reference") if args.no_reference else ensure_reference_venv(args.reference_venv)
    if python is None:
        print(f"NOTE: dicompyler-core is NOT measured in this run ({why_not}); "
              f"falling back to its recorded {RECORDED_REFERENCE_S} s.")

    from COMPASSLib import __version__

    print(f"data: {DATA}")
    print(f"COMPASS {__version__}: " + ", ".join(f"{n} {importlib.metadata.version(n)}"
                                                 for n in ("pydicom", "numpy", "SimpleITK")))
    compass_run()  # warm-up: imports and the file cache (the reference's subprocess reads the same files)
    ref_runs, own_runs = [], []
    for i in range(args.repeat):
        if python is not None:
            ref_runs.append(reference_run(python))
            if i == 0:
                versions = ref_runs[0]["versions"].items()
                print("dicompyler-core environment: " + ", ".join(f"{n} {v}" for n, v in versions))
        own_runs.append(compass_run())
        print(f"run {i + 1}/{args.repeat}: COMPASS {own_runs[-1]['total_s']:.3f} s"
              + (f", dicompyler-core {ref_runs[-1]['total_s']:.3f} s" if ref_runs else ""), flush=True)
    print_report(ref_runs, own_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
