"""Benchmark: the twin's what-if projections against the synthetic generator's counterfactual truth.

A twin is trained with the main job (`pipeline.run`, fast profile) on one synthetic cohort and projects
the patients of a held-out cohort (another seed) after fraction 2 and 3, for the dose inside each organ
scaled by 0.5, 0.8 and 1.2 over the remaining fractions. The truth is the generator's own
(`synth.counterfactual.true_probability`: same anatomy, radiosensitivity, patient offset, PET kinetics,
the remaining fractions' organ doses scaled). Printed:
- sign agreement of projected vs true risk change (scaled minus unscaled, the scaled organ's own risk,
  after the last fraction) where |true change| > 0.05 (goal >= 90 %), Spearman of the two (goal >= 0.6);
- the size of the projected change against the true one (slope through the origin, per organ and K), and
  how much of it comes through the exact dose features alone and through the forecast image features alone
  (each scenario rescored with the other path held as planned); how often the true change lies inside the
  projection's paired 95 % change interval (`change_low`..`change_high`); changes.csv holds every projection;
- "as planned": the real later fractions replayed as the plan give the table's dose features exactly
  (bed_, dvh_ columns, max relative difference), and the risk `compass update` gives after the real
  fractions K+1..N lies in the as-planned interval on >= 90 % of trajectories;
- `compass whatif` on one patient with 3 scenarios, wall time (goal < 15 s on 2 cores).

    .venv/bin/python Testing/Benchmarks/bench_whatif.py --work /tmp/bench_whatif
    .venv/bin/python Testing/Benchmarks/bench_whatif.py --train-patients 12 --test-patients 6   # quick look
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ORGANS = ("SpinalCord", "Heart", "Esophagus")
FACTORS = (0.5, 0.8, 1.2)
AFTER = (2, 3)


def _cohort(path, patients, seed):
    from COMPASSLib.synth import generate_cohort

    if not (path / "cohort.json").is_file():
        generate_cohort(path, patients=patients, fractions=5, seed=seed, size="small")
    return path / "cohort.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/bench_whatif")
    ap.add_argument("--train-patients", type=int, default=40)
    ap.add_argument("--test-patients", type=int, default=40)
    ap.add_argument("--draws", type=int, default=40)
    args = ap.parse_args(argv)

    import pandas as pd
    from scipy.stats import spearmanr

    from COMPASSLib.cohort import Cohort
    from COMPASSLib.pipeline import run, score
    from COMPASSLib.synth.counterfactual import true_probability
    from COMPASSLib.twin import whatif

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train = _cohort(work / "train", args.train_patients, 7001)
    test = _cohort(work / "test", args.test_patients, 7002)
    out = work / "run"
    t0 = time.perf_counter()
    if not (out / "metrics.json").is_file():
        run(train, out, {"profile": "fast", "n_bootstrap": 200})
    print(f"twin trained on {args.train_patients} patients ({time.perf_counter() - t0:.0f} s)")

    cohort = Cohort.load(test)
    cache = work / "test_cache"
    real = score(out / "model", cohort, cache_dir=cache)                 # `compass update` after fraction 5
    from COMPASSLib.features.table import extract_cohort
    from COMPASSLib.twin.model import CompassTwin

    twin = CompassTwin.load(out / "model")
    table = extract_cohort(cohort, twin.feature_settings(), cache_dir=cache, organs=twin.organs_)
    dose_cols = [c for c in table.columns if c.startswith(("bed_", "dvh_"))]
    changes, inside, worst = [], [], 0.0
    t0 = time.perf_counter()
    for pid in cohort.patient_ids:
        p = cohort.patient(pid)
        base = {K: true_probability(test.parent, pid, K) for K in AFTER}
        for K in AFTER:
            replay = [str(cohort.path(p.fraction(k).dose[0])) for k in range(K + 1, 6)]
            scen = whatif.scenarios_from_options([f"{o}={f}" for o in ORGANS for f in FACTORS], [",".join(replay)])
            frame, feats = whatif.project(out / "model", cohort_subset(cohort, pid), K, scen, cache_dir=cache,
                                          training=out / "features.csv", draws=args.draws, features=True)
            last = frame[frame["fraction"] == 5].set_index(["scenario", "organ"])
            paths = _paths(twin, feats)
            for o in ORGANS:
                for f in FACTORS:
                    truth = true_probability(test.parent, pid, K, {o: f})[o] - base[K][o]
                    mine = last.loc[(f"{o}={f}", o)]
                    changes.append((pid, K, o, f, mine["risk"] - last.loc[("as_planned", o), "risk"], truth,
                                    *paths[(f"{o}={f}", o)], mine["change_low"], mine["change_high"]))
                r = real[(real["patient"] == pid) & (real["organ"] == o) & (real["fraction"] == 5)]["risk"].iloc[0]
                row = last.loc[("as_planned", o)]
                inside.append(row["ci_low"] <= r <= row["ci_high"])
            rp = feats[feats["scenario"] == scen[-1].name].set_index(["organ", "fraction"]).sort_index()
            rt = table[(table["patient"] == pid) & (table["fraction"] > K)].set_index(["organ", "fraction"]).sort_index()
            a, b = rp.loc[rt.index, dose_cols].to_numpy(float), rt[dose_cols].to_numpy(float)
            worst = max(worst, float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))))
    t_project = time.perf_counter() - t0

    ch = pd.DataFrame(changes, columns=["patient", "after", "organ", "factor", "projected", "true",
                                       "projected_dose_only", "projected_image_only", "change_low", "change_high"])
    ch["covered"] = (ch["change_low"] <= ch["true"]) & (ch["true"] <= ch["change_high"])
    big = ch[ch["true"].abs() > 0.05]
    agree = float((np.sign(big["projected"]) == np.sign(big["true"])).mean()) if len(big) else float("nan")
    rho = float(spearmanr(ch["projected"], ch["true"]).statistic)

    pdir = Path(cohort.path(cohort.patient(cohort.patient_ids[0]).fraction(1).dose[0])).parents[1]
    times = []
    for _ in range(2):   # cold feature cache, then warm (as after `compass update` of fraction K)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "COMPASSLib", "whatif", str(out / "model"), str(pdir), "--after", "2",
                        "--scale", "Heart=0.5", "--fractions", "4", "--cache", str(work / "cli_cache"),
                        "-o", str(work / "cli_out")], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)

    print(f"\nheld-out patients {len(cohort.patient_ids)}, projections {len(ch)} (after {AFTER}, factors {FACTORS}); "
          f"projection loop {t_project:.0f} s")
    print(f"{'check':<58} {'value':>10} {'goal':>10}")
    print(f"{'sign agreement, |true change| > 0.05 (' + str(len(big)) + ' organ-scenarios)':<58} {agree:>10.1%} {'>= 90 %':>10}")
    print(f"{'Spearman projected vs true change':<58} {rho:>10.3f} {'>= 0.6':>10}")
    print(f"{'replayed plan: dose features, max relative difference':<58} {worst:>10.2e} {'0 (exact)':>10}")
    print(f"{'compass update risk inside the as-planned interval':<58} {np.mean(inside):>10.1%} {'>= 90 %':>10}")
    print(f"{'true change inside the paired 95 % change interval (' + str(len(ch)) + ')':<58} {ch['covered'].mean():>10.1%} "
          f"{'(95 %)':>10}")
    print(f"{'compass whatif, 1 patient, 3 scenarios, cold cache, s':<58} {times[0]:>10.1f} {'< 15':>10}")
    print(f"{'compass whatif, 1 patient, 3 scenarios, warm cache, s':<58} {times[1]:>10.1f} {'< 15':>10}")
    print("size of the projected change: least-squares slope of projected on true change (1: the true size), "
          "and the part of it through the exact dose features alone (the forecast image features kept as planned) "
          "and through the forecast image features alone (the dose features kept as planned)")
    for (K, o), g in list(ch.groupby(["after", "organ"])) + [(("all", ""), ch)]:
        print(f"  after {K} {o:<11} mean projected change {g['projected'].mean():+.3f}  true {g['true'].mean():+.3f}  "
              f"slope {_slope(g, 'projected'):.2f}  dose only {_slope(g, 'projected_dose_only'):.2f}  "
              f"image only {_slope(g, 'projected_image_only'):.2f}  true change in the interval {g['covered'].mean():.0%}")
    ch.to_csv(work / "changes.csv", index=False)
    return 0


def _paths(twin, feats):
    """{(scenario, organ): (change through the dose features alone, through the image features alone)}: each
    scenario's point-forecast rows rescored with the other path held as planned. Why: the twin reads a PET or
    CT response that the lower dose lowers as it reads one of a less sensitive organ, so the image path can
    add to the change that the dose path already carries."""
    from COMPASSLib.twin.forecast import IMAGE_PREFIXES

    image = [c for c in feats.columns if c.startswith(IMAGE_PREFIXES)]
    planned = feats[feats["scenario"] == "as_planned"].drop(columns="scenario").set_index(["organ", "fraction"])

    def final_risk(rows):
        r = twin.risk_trajectory(rows.reset_index(), explain=False)
        return r[r["fraction"] == r["fraction"].max()].set_index("organ")["risk"]

    r0, out = final_risk(planned), {}
    for name, rows in feats[feats["scenario"] != "as_planned"].groupby("scenario"):
        rows = rows.drop(columns="scenario").set_index(["organ", "fraction"]).loc[planned.index]
        dose_only, image_only = rows.copy(), planned.copy()
        dose_only[image], image_only[image] = planned[image], rows[image]
        rd, ri = final_risk(dose_only) - r0, final_risk(image_only) - r0
        out.update({(name, o): (float(rd[o]), float(ri[o])) for o in r0.index})
    return out


def _slope(g, column) -> float:
    """Least-squares slope through the origin of `column` on the true change."""
    return float((g[column] * g["true"]).sum() / (g["true"] ** 2).sum())


def cohort_subset(cohort, pid):
    from COMPASSLib.twin.whatif import delivered_subset

    return delivered_subset(cohort, pid, 10 ** 6)


if __name__ == "__main__":
    sys.exit(main())
