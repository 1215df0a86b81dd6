"""Benchmark of `compass features` on a synthetic cohort (default: generate_cohort's defaults).

Prints the wall time per patient-fraction, the share spent in pyradiomics, I/O (reading DICOM) and
resampling onto the reference grid, and the speed-up of 2 worker processes over 1 measured side by side.
Also the ingest the table uses (one `ingest.PatientLoader` per patient: reference grid and structure
files read once, only the modalities and organs the profile needs) against the reference of a full
`ingest.load_fraction` per fraction, side by side on the same cohort.

    .venv/bin/python Testing/Benchmarks/bench_features.py [--patients 8 --fractions 5 --size full]
        [--profile full|fast] [--cohort existing/cohort.json]
"""
from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path


def _timed(store: dict, name: str, fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            store[name] = store.get(name, 0.0) + time.perf_counter() - t0
    return wrapper


def _max_rel_difference(a, b) -> float:
    """Largest |a - b| / max(|a|, 1e-12) over the numeric cells (NaN in both places counts as equal)."""
    import numpy as np

    assert list(a.columns) == list(b.columns) and a[["patient", "organ", "fraction"]].equals(
        b[["patient", "organ", "fraction"]]), "tables differ in layout"
    x = a.select_dtypes("number").to_numpy(float)
    y = b.select_dtypes("number").to_numpy(float)
    both_nan = np.isnan(x) & np.isnan(y)
    diff = np.where(both_nan, 0.0, np.abs(x - y) / np.maximum(np.abs(x), 1e-12))
    return float(np.nanmax(np.where(np.isnan(diff), np.inf, diff)))


def _ingest_side_by_side(cohort, settings) -> tuple:
    """Seconds per patient-fraction to load every fraction: full load_fraction each time (reference) and one
    PatientLoader per patient with the profile's modalities and organs (what features.table does)."""
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.features.settings import organs_to_score
    from COMPASSLib.features.fraction import needed_modalities
    from COMPASSLib.ingest import PatientLoader, load_fraction

    cohort = Cohort.load(cohort)
    organs = organs_to_score(settings, cohort)
    pairs = [(p.id, f.index) for p in cohort.patients for f in p.fractions]
    t0 = time.perf_counter()
    for pid, k in pairs:
        load_fraction(cohort, pid, k, reference=settings.reference)
    reference = (time.perf_counter() - t0) / len(pairs)
    t0 = time.perf_counter()
    loaders = {}
    for pid, k in pairs:
        if pid not in loaders:
            loaders = {pid: PatientLoader(cohort, pid, settings.reference, modalities=needed_modalities(settings),
                                          organs=organs)}
        loaders[pid].load(k)
    return reference, (time.perf_counter() - t0) / len(pairs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cohort", help="use this cohort.json instead of generating one")
    p.add_argument("--patients", type=int, default=8)
    p.add_argument("--fractions", type=int, default=5)
    p.add_argument("--size", default="full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="full", choices=("full", "fast"))
    args = p.parse_args(argv)

    from COMPASSLib import geometry
    from COMPASSLib.features import radiomics, table
    from COMPASSLib.features.settings import FeatureSettings

    with tempfile.TemporaryDirectory() as tmp:
        if args.cohort:
            cohort = Path(args.cohort)
        else:
            from COMPASSLib.synth import generate_cohort

            t0 = time.perf_counter()
            cohort = generate_cohort(Path(tmp) / "cohort", patients=args.patients, fractions=args.fractions,
                                     seed=args.seed, size=args.size)
            print(f"generated {args.patients} x {args.fractions} ({args.size}) in {time.perf_counter() - t0:.1f} s")
        settings = FeatureSettings(profile=args.profile)
        ingest_reference, ingest_loader = _ingest_side_by_side(cohort, settings)

        # 1 worker, in this process, with timers around pyradiomics and the resampling functions
        spent: dict = {}
        radiomics.execute = _timed(spent, "pyradiomics", radiomics.execute)
        geometry.resample_image = _timed(spent, "resampling", geometry.resample_image)
        geometry.resample_mask = _timed(spent, "resampling", geometry.resample_mask)
        t0 = time.perf_counter()
        t1_table = table.extract_cohort(cohort, settings, workers=1)
        wall1 = time.perf_counter() - t0
        timings = t1_table.attrs["timings"]
        n = len(timings)
        io_and_resampling = sum(t["io_s"] for t in timings)
        io = io_and_resampling - spent.get("resampling", 0.0)

        # 2 workers, fresh processes (no timers there), same input, no cache
        t0 = time.perf_counter()
        t2_table = table.extract_cohort(cohort, settings, workers=2)
        wall2 = time.perf_counter() - t0

    same = _max_rel_difference(t1_table, t2_table)
    print(f"profile {args.profile}: {n} patient-fractions, {len(t1_table)} rows x {t1_table.shape[1]} columns")
    print(f"1 worker : {wall1:8.2f} s  = {wall1 / n:.3f} s per patient-fraction")
    for name, value in (("pyradiomics", spent.get("pyradiomics", 0.0)), ("I/O (DICOM read)", io),
                        ("resampling", spent.get("resampling", 0.0))):
        print(f"   {name:18s} {value:8.2f} s  {100 * value / wall1:5.1f} %")
    rest = wall1 - spent.get("pyradiomics", 0.0) - io_and_resampling
    print(f"   {'other (BED, DVH, SUVpeak, cache, pandas)':18s} {rest:8.2f} s  {100 * rest / wall1:5.1f} %")
    print(f"ingest per patient-fraction: load_fraction each time (reference) {ingest_reference:.3f} s, "
          f"PatientLoader ({args.profile} profile) {ingest_loader:.3f} s: {ingest_reference / ingest_loader:.2f}x")
    print(f"2 workers: {wall2:8.2f} s  = {wall2 / n:.3f} s per patient-fraction")
    print(f"speed-up 2 workers over 1: {wall1 / wall2:.2f}x  (largest relative difference between the two "
          f"tables: {same:.2g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
