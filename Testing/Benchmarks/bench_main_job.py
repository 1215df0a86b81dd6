"""Benchmark: the whole main job (`compass run`) on the default synthetic cohort (8 patients x 5
fractions) and the living twin (`compass update`) when one new fraction arrives.

Goals (2 CPU cores): main job < 3 min, update < 10 s. Printed as ratios to the goals, and the update is
measured side by side with its reference, the same command on an empty feature cache (full recompute).
Each command runs as a fresh `python -m COMPASSLib` process, as a user runs it (imports included).

    .venv/bin/python Testing/Benchmarks/bench_main_job.py [--work DIR] [--profile full|fast] [--epochs N]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def compass(*args) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "COMPASSLib", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument("--profile", default="full", choices=("full", "fast"))
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="compass_bench_"))

    from COMPASSLib.cohort import Cohort
    from COMPASSLib.pipeline import write_subset
    from COMPASSLib.synth import generate_cohort

    cohort = Path(generate_cohort(work / "cohort", patients=8, fractions=5, seed=0))
    extra = ["--profile", args.profile] + (["--epochs", args.epochs] if args.epochs else [])
    t_run = compass("run", cohort, "-o", work / "out", *extra)

    # A cache holding fractions 1-4 of patient 1 (warmed, untimed), then fraction 5 arrives.
    first = Cohort.load(cohort).patient_ids[:1]
    four = write_subset(cohort, work / "arrive4", 4, first).parent
    five = write_subset(cohort, work / "arrive5", 5, first).parent
    compass("update", work / "out" / "model", four, "--cache", work / "cache_update")
    t_update = compass("update", work / "out" / "model", five, "--cache", work / "cache_update")
    t_full = compass("update", work / "out" / "model", five, "--cache", work / "cache_empty")

    print(f"main job, default cohort (8 x 5, {args.profile} profile): {t_run:.1f} s "
          f"= {t_run / 180:.2f} x the 3 min goal")
    print(f"compass update, one new fraction: {t_update:.1f} s = {t_update / 10:.2f} x the 10 s goal; "
          f"reference (same patient, empty cache) {t_full:.1f} s; ratio new-fraction / full = "
          f"{t_update / t_full:.2f}")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
