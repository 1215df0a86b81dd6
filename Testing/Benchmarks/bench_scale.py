"""How the main job's cost grows: `pipeline.run` on small synthetic cohorts through a real local Dask
cluster (`dask scheduler` + 1 or 2 `dask worker` processes, Testing/helpers_dask.py), each run in a fresh
child process with a fresh feature cache (the report's slice renders and what-if projections off: fixed
costs of at most 8 warned patients each, whatever the cohort size).

Prints per run the wall time of the job and of its steps, the peak resident memory of the job's own
process and the largest per-patient peak measured inside the workers (COMPASSLib.executors.measured);
then a linear fit of wall time against patient-fractions per worker count with its residuals (goal:
every point within 15 % of the fit), the speed-up of the feature step from one worker to two (goal
>= 1.7x), and a projection for 1,000 patients x 30 fractions on 64 workers from the measured
per-patient-fraction costs (goal: < 2 h wall, < 4 GiB per worker), with the numbers it rests on.

    .venv/bin/python Testing/Benchmarks/bench_scale.py                  # 10,20,40,80 x 5 and 10,20 x 30 fx
    .venv/bin/python Testing/Benchmarks/bench_scale.py --sizes 4,8 --long-sizes "" --quick
Options: --workers 1,2  --profile fast|full (default full)  --epochs N  --keep DIR (reuse cohorts and runs)
  --repeat N: at least N runs of each point, the fastest counted (on a shared 2-core machine one run of the
  same tasks varies by up to 25 %: other processes take a core); with --keep, the runs measured before
  (DIR/results.json) count, so `--keep DIR --repeat 2 --workers 2` adds a second run of the 2-worker points only.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))          # Testing/: helpers_dask (the tests' cluster, one code)

GIB = 1024 ** 3


def one_run(cohort, out, scheduler, settings) -> dict:
    """The main job in this (child) process; its step costs and this process's peak memory."""
    import resource

    from COMPASSLib.pipeline import run

    t0 = time.perf_counter()
    m = run(cohort, out, {**settings, "scheduler": scheduler})
    prov = m["provenance"]
    return {"wall_s": time.perf_counter() - t0, "steps": prov["steps"],
            "main_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "patient_peak_rss_bytes": max(s["peak_rss_bytes"] for s in prov["feature_tasks"].values()),
            "n_patients": m["n_patients"], "cv": {k: m["cv"][k] for k in ("scheme", "k")},
            "table_bytes": (Path(out) / "features.csv").stat().st_size}


def cohort_for(root: Path, patients: int, fractions: int):
    """The synthetic cohort (generated once per size in `root`); None when the generator refuses it."""
    from COMPASSLib.errors import CompassError
    from COMPASSLib.synth import generate_cohort

    folder = root / f"cohort_{patients}x{fractions}"
    if (folder / "cohort.json").is_file():
        return folder / "cohort.json"
    try:
        return Path(generate_cohort(folder, patients=patients, fractions=fractions, seed=0, size="small"))
    except (CompassError, ValueError, TypeError) as e:
        print(f"  {patients} x {fractions} fractions: the synthetic generator refuses it ({e}); skipped")
        return None


def measure(cohort, workers: int, work: Path, settings: dict) -> dict:
    import os
    import shutil

    from helpers_dask import dask_cluster

    shutil.rmtree(work / "out", ignore_errors=True)   # a fresh feature cache: every run computes its features
    # the report's slice renders (at most 8 warned patients, in the job's own process) are a fixed cost: off
    os.environ["COMPASS_REPORT_IMAGES"] = "0"

    with dask_cluster(work / "cluster", n_workers=workers) as cluster:
        child = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps({"cohort": str(cohort), "out": str(work / "out"),
                                                            "scheduler": cluster.address, "settings": settings})],
            capture_output=True, text=True)
    if child.returncode:
        raise SystemExit(f"run failed:\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def linear_fit(xs, ys):
    import numpy as np

    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    fitted = a + b * np.asarray(xs, float)
    return a, b, (np.asarray(ys) - fitted) / fitted


def project(rows, patients=1000, fractions=30, workers=64) -> None:
    """1,000 x 30 on 64 workers from the measured costs per patient-fraction: for each step the slope of
    its worker-seconds against patient-fractions over the runs (a fixed start-up cost, e.g. a worker's
    first imports, goes into the intercept, not into the projection; with one size only, the ratio)."""
    target_pf = patients * fractions
    most = max(r["workers"] for r in rows)
    runs = [r for r in rows if r["workers"] == most]
    big = max(runs, key=lambda r: r["pf"])
    k = big["cv"]["k"] or 10

    def per_pf(value):
        xs, ys = [r["pf"] for r in runs], [value(r) for r in runs]
        if len(set(xs)) < 2:
            return ys[-1] / xs[-1]
        return max(linear_fit(xs, ys)[1], 0.0)

    feat_per_pf = per_pf(lambda r: r["steps"]["features"]["task_seconds"])
    # one fold trains on (k-1)/k of the cohort: worker-seconds of all folds per training patient-fraction
    fold_per_pf = per_pf(lambda r: r["steps"]["evaluation"]["task_seconds"] / (k - 1))
    local_per_pf = per_pf(lambda r: r["steps"]["final_fit"]["seconds"] + r["steps"]["risk"]["seconds"]
                          + r["steps"]["metrics"]["seconds"])
    features_s = feat_per_pf * target_pf / workers
    # above 100 patients the default is group-kfold:10: 10 fold tasks side by side, each on 90 % of the cohort
    folds_s = fold_per_pf * 0.9 * target_pf * -(-10 // workers)
    local_s = local_per_pf * target_pf
    worker_gib = max(big["patient_peak_rss_bytes"],
                     big["steps"]["evaluation"]["max_task_peak_rss_bytes"] + 3 * big["table_bytes"] * target_pf / big["pf"]) / GIB
    sizes = ", ".join(f"{r['patients']}x{r['fractions']}" for r in runs)
    print(f"\nprojection for {patients} patients x {fractions} fractions on {workers} workers, from the slopes of "
          f"the runs on {most} worker(s) ({sizes}):")
    print(f"  features: {feat_per_pf:.3f} worker-s per patient-fraction x {target_pf} / {workers} = {features_s:.0f} s")
    print(f"  evaluation: group-kfold:10, {fold_per_pf:.4f} worker-s per training patient-fraction x "
          f"{0.9 * target_pf:.0f} per fold, 10 folds side by side = {folds_s:.0f} s")
    print(f"  final fit + risk + metrics (local): {local_per_pf:.4f} s per patient-fraction = {local_s:.0f} s")
    total = features_s + folds_s + local_s
    print(f"  total {total / 3600:.2f} h (goal < 2 h): {'met' if total < 7200 else 'NOT met'}")
    print(f"  per worker: patient peak {big['patient_peak_rss_bytes'] / GIB:.2f} GiB, fold peak "
          f"{big['steps']['evaluation']['max_task_peak_rss_bytes'] / GIB:.2f} GiB + 3 x the table "
          f"({big['table_bytes'] * target_pf / big['pf'] / GIB:.2f} GiB as CSV) -> {worker_gib:.2f} GiB (goal < 4 GiB): "
          f"{'met' if worker_gib < 4 else 'NOT met'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,20,40,80", help="patients with 5 fractions")
    ap.add_argument("--long-sizes", default="10,20", help="patients with 30 fractions ('' for none)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--profile", default="full", choices=("fast", "full"))
    ap.add_argument("--epochs", type=int, default=None, help="twin epochs (default the twin's)")
    ap.add_argument("--cv", default="group-kfold:10",
                    help="evaluation folds (default group-kfold:10, the department-scale default: LOPO's cost grows "
                         "with the square of the cohort)")
    ap.add_argument("--quick", action="store_true", help="fast profile, 5 epochs, 20 bootstrap resamples")
    ap.add_argument("--keep", metavar="DIR", help="folder for cohorts and runs (kept; cohorts and results reused)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per point at least; the fastest counts")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:                                   # the child process: one run, JSON on the last line
        spec = json.loads(args.one)
        print(json.dumps(one_run(spec["cohort"], spec["out"], spec["scheduler"], spec["settings"])))
        return 0
    # the report's what-if step is capped at twin.whatif.REPORT_PATIENTS warned patients: a fixed cost, off here
    settings = {"profile": "fast" if args.quick else args.profile, "twin": {}, "cv": args.cv,
                "n_bootstrap": 20 if args.quick else 1000, "whatif_sparing": None}
    if args.quick or args.epochs:
        settings["twin"]["epochs"] = args.epochs or 5
    plan = [(int(p), 5) for p in args.sizes.split(",") if p] + [(int(p), 30) for p in args.long_sizes.split(",") if p]
    worker_counts = [int(w) for w in args.workers.split(",")]
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_scale_"))
    results = root / "results.json"
    # runs measured before in this folder with the same settings (--keep): they count towards --repeat
    runs = [r for r in (json.loads(results.read_text()) if results.is_file() else []) if r["settings"] == settings]
    rows = []                      # one per point: its fastest run
    print(f"settings {settings}; folder {root}; {len(runs)} earlier runs")
    print(f"{'patients':>8} {'fx':>3} {'workers':>7} {'wall s':>8} {'features':>8} {'folds':>7} {'final':>6} "
          f"{'job MiB':>8} {'patient MiB':>11}")
    for patients, fractions in plan:
        cohort = cohort_for(root, patients, fractions)
        if cohort is None:
            continue
        # the worker counts asked for are measured; those measured before (--keep) are shown and counted too
        for w in sorted(set(worker_counts) | {r["workers"] for r in runs}):
            done = [r for r in runs if (r["patients"], r["fractions"], r["workers"]) == (patients, fractions, w)]
            for _ in range(args.repeat - len(done) if w in worker_counts else 0):
                r = measure(cohort, w, root / f"run_{patients}x{fractions}_w{w}", settings)
                r.update(patients=patients, fractions=fractions, workers=w, pf=patients * fractions,
                         settings=settings, measured=time.strftime("%Y-%m-%d %H:%M"))
                runs.append(r)
                done.append(r)
                results.write_text(json.dumps(runs, indent=1))
            if not done:
                continue
            r = min(done, key=lambda x: x["wall_s"])
            walls = ", ".join(f"{x['wall_s']:.1f}" for x in done)
            rows.append(r)
            st = r["steps"]
            print(f"{patients:>8} {fractions:>3} {w:>7} {r['wall_s']:>8.1f} {st['features']['seconds']:>8.1f} "
                  f"{st['evaluation']['seconds']:>7.1f} {st['final_fit']['seconds']:>6.1f} "
                  f"{r['main_peak_rss_bytes'] / 2**20:>8.0f} {r['patient_peak_rss_bytes'] / 2**20:>11.0f}"
                  + (f"  (fastest of {len(done)}: {walls} s)" if len(done) > 1 else ""), flush=True)
    worker_counts = sorted({r["workers"] for r in rows})
    for w in worker_counts:
        pts = [r for r in rows if r["workers"] == w]
        if len({r["pf"] for r in pts}) < 2:
            continue
        a, b, res = linear_fit([r["pf"] for r in pts], [r["wall_s"] for r in pts])
        worst = max(abs(x) for x in res)
        print(f"\n{w} worker(s): wall = {a:.1f} s + {b:.3f} s x patient-fractions; residuals "
              + ", ".join(f"{r['patients']}x{r['fractions']}: {x:+.1%}" for r, x in zip(pts, res))
              + f"; largest {worst:.1%} (goal <= 15 %): {'met' if worst <= 0.15 else 'NOT met'}")
    if {1, 2} <= set(worker_counts):
        print("\nfeature step speed-up 1 -> 2 workers (goal >= 1.7x):")
        for patients, fractions in plan:
            one = [r for r in rows if (r["patients"], r["fractions"], r["workers"]) == (patients, fractions, 1)]
            two = [r for r in rows if (r["patients"], r["fractions"], r["workers"]) == (patients, fractions, 2)]
            if one and two:
                s = one[0]["steps"]["features"]["seconds"] / two[0]["steps"]["features"]["seconds"]
                print(f"  {patients} x {fractions}: {s:.2f}x")
    if rows:
        project(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
