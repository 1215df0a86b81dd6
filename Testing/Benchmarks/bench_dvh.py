"""DVH benchmark: all ROIs of the dicompyler-core example plan (read RTDOSE + rasterise every RTSTRUCT ROI
on the dose grid + DVH metrics), against dicompyler-core 0.5.6's 7.9 s for the same 10 ROIs on a 2-core
machine (../shared/data/dicompyler_example/EXPECTED_VALUES.md). Not a test: it prints the figures.

    .venv/bin/python Testing/Benchmarks/bench_dvh.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("COMPASS_SHARED_DATA", REPO.parent / "shared" / "data")) / "dicompyler_example"
DICOMPYLER_CORE_S = 7.9  # all 10 ROIs, dicompyler-core 0.5.6, 2 cores (EXPECTED_VALUES.md)


def one_run():
    from COMPASSLib import dose
    from COMPASSLib.io.rtdose import read_rtdose
    from COMPASSLib.io.rtstruct import read_rtstruct

    t0 = time.perf_counter()
    dose_image = read_rtdose(DATA / "rtdose.dcm")
    t1 = time.perf_counter()
    masks = read_rtstruct(DATA / "rtss.dcm", dose_image)
    t2 = time.perf_counter()
    metrics = {name: dose.dvh(dose_image, mask).metrics(vx_gy=(10,)) for name, mask in masks.items()}
    t3 = time.perf_counter()
    return metrics, {"read_dose": t1 - t0, "rasterise": t2 - t1, "dvh": t3 - t2, "total": t3 - t0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)  # the empty 'Areola' ROI warns on every run
    one_run()  # warm-up: imports and file cache
    runs = [one_run() for _ in range(args.repeat)]
    metrics = runs[-1][0]
    timing = {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]}
    print(f"{len(metrics)} ROIs with voxels (of 10 in the RTSTRUCT; Areola is empty on the dose grid)")
    for name, m in metrics.items():
        print(f"  {name:<16} {m['volume_cc']:>10.2f} cc  mean {m['mean_gy']:7.4f} Gy  max {m['max_gy']:7.3f} Gy")
    print("median of %d runs: read dose %.3f s, rasterise %.3f s, DVH %.3f s, total %.3f s"
          % (args.repeat, timing["read_dose"], timing["rasterise"], timing["dvh"], timing["total"]))
    print(f"dicompyler-core (reference, 2 cores): {DICOMPYLER_CORE_S:.1f} s")
    print(f"speed-up vs dicompyler-core: {DICOMPYLER_CORE_S / timing['total']:.1f}x "
          f"(ratio COMPASS/dicompyler = {timing['total'] / DICOMPYLER_CORE_S:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
