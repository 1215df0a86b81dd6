"""Benchmark of the synthetic cohort generator (not a test).

Prints, per grid size, seconds per patient for the simulation alone (draw_truth: anatomy, beams, BED,
hidden truth) and for the whole generate_cohort (plus DICOM writing), their ratio, and the time a
100-patient cohort would take. With --truth it also prints the separability of the hidden model on a
40-patient cohort (toxic rate; AUC of mean dose, gEUD, hot-spot index and PET rise), the figures quoted in
docs/synthetic_cohort.md.

    .venv/bin/python Testing/Benchmarks/bench_synth.py [--patients 4] [--fractions 5] [--sizes small full] [--truth]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def seconds_per_patient(fn, patients):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / patients


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=4)
    ap.add_argument("--fractions", type=int, default=5)
    ap.add_argument("--sizes", nargs="+", default=["small", "full"], choices=["small", "full"])
    ap.add_argument("--truth", action="store_true", help="also print the hidden model's separability (40 patients)")
    args = ap.parse_args(argv)

    from COMPASSLib.provenance import sha256_files
    from COMPASSLib.synth import draw_truth, generate_cohort

    print(f"synthetic cohort generator: {args.patients} patients x {args.fractions} fractions per size")
    for size in args.sizes:
        sim = seconds_per_patient(lambda: draw_truth(args.patients, args.fractions, seed=0, size=size), args.patients)
        with tempfile.TemporaryDirectory() as tmp:
            full = seconds_per_patient(lambda: generate_cohort(tmp, args.patients, args.fractions, seed=0, size=size),
                                       args.patients)
            files = [p for p in Path(tmp).rglob("*") if p.is_file()]
            mb = sum(p.stat().st_size for p in files) / 1e6 / args.patients
            digest = sha256_files(files)[:12]
        print(f"  {size:5s}: simulate {sim:6.2f} s/patient | generate (with DICOM) {full:6.2f} s/patient "
              f"| ratio generate/simulate {full / sim:4.1f} | {mb:6.1f} MB/patient | 100 patients ~ "
              f"{100 * full / 60:5.1f} min | sha256 {digest}")

    if args.truth:
        import numpy as np
        from scipy.stats import mannwhitneyu

        for seed in (0, 1, 2026):
            rows = draw_truth(40, args.fractions, seed=seed, size="small")
            toxic = np.array([r["grade"] >= 1 for r in rows])

            def auc(key, rows=rows, toxic=toxic):
                x = np.array([r[key] for r in rows])
                return mannwhitneyu(x[toxic], x[~toxic]).statistic / (toxic.sum() * (~toxic).sum())

            print(f"  truth seed {seed}: toxic {toxic.mean():.2f} | AUC mean dose {auc('mean_dose_gy'):.2f} "
                  f"gEUD {auc('geud_eqd2_gy'):.2f} hot-spot index {auc('hotspot_index'):.2f} "
                  f"PET rise {auc('pet_rise'):.2f} "
                  f"(hidden radiosensitivity {auc('radiosensitivity'):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
