"""`compass run COHORT -o OUT`: the main job, from files to report."""
from __future__ import annotations

from COMPASSLib.twin import operating_point

HELP = "main job: features, cross-validated twin vs LKB, final twin, per-fraction risk, report"
DESCRIPTION = (HELP + ". Writes OUT/metrics.json, OUT/risk.csv, OUT/model/, OUT/report.html (and the "
               "feature table, LOPO predictions and feature cache the report and `compass update` use).")


def add_twin_arguments(parser):
    """Twin options shared by `compass run` and `compass demo`."""
    parser.add_argument("--profile", choices=("fast", "full"), default=None,
                        help="feature profile: full (default, with radiomics) or fast (BED/DVH kinetics, PET); "
                             "wins over the profile of --settings")
    parser.add_argument("--settings", metavar="FILE", help="feature settings (YAML/JSON); --profile wins over it")
    parser.add_argument("--epochs", type=int, help="autoencoder training epochs (default 150)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="torch device for the autoencoder (default cpu)")
    parser.add_argument("--seed", type=int, help="random seed of the twin and the bootstrap (default 0)")
    parser.add_argument("--organ-mode", choices=("shared", "organ"),
                        help="one autoencoder for all organs with an organ code (default) or one per organ")
    operating_point.add_arguments(parser)
    parser.add_argument("--workers", type=int, default=1,
                        help="local processes for the heavy steps: features, evaluation folds, texture maps (default 1)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler address (e.g. tcp://host:8786): the heavy steps run on its workers, "
                             "which must read the cohort and write OUT (docs/scaling.md)")
    parser.add_argument("--cv", metavar="SCHEME",
                        help="cross-validation: lopo or group-kfold:K (patients never split); default lopo up to "
                             "100 patients, group-kfold:10 above (docs/twin.md)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95 %% CIs")
    parser.add_argument("--whatif-sparing", metavar="F|none", type=_sparing, default=0.7,
                        help="for the report: each warned organ's remaining dose scaled by F after its first warning, "
                             "projected beside as planned (OUT/whatif_warned.csv; default 0.7; none: off)")


def run_settings(args) -> dict:
    twin = {k: v for k, v in {"epochs": args.epochs, "device": args.device, "seed": args.seed,
                              "organ_mode": args.organ_mode}.items() if v is not None}
    twin.update(operating_point.settings(args))
    return {"profile": args.profile, "feature_settings": args.settings, "workers": args.workers,
            "scheduler": args.scheduler, "cv": args.cv, "n_bootstrap": args.bootstrap, "twin": twin,
            "whatif_sparing": args.whatif_sparing}


def _sparing(text):
    import argparse

    if str(text).strip().lower() in ("none", "off", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"a dose factor >= 0 or none, got {text!r}")
    return value


def _list(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def _fractions(text):
    import argparse

    try:
        return [int(t) for t in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"fractions must be whole numbers separated by commas, got {text!r}")


def add_arguments(parser):
    parser.add_argument("cohort", help="cohort.json (or the folder holding it) with outcomes.csv beside it")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    add_twin_arguments(parser)
    parser.add_argument("--texture-maps", metavar="ORGANS", type=_list,
                        help="write voxelwise texture maps of the cumulative BED for these organs (comma-separated, "
                             "'all', or 'warned': each patient's organs the twin warned for) as "
                             "OUT/texture/<patient>/fx<k>/<organ>_<feature>.nrrd; default: none")
    parser.add_argument("--texture-fractions", metavar="K,..", type=_fractions,
                        help="fractions to map with --texture-maps (default: all)")
    parser.add_argument("--texture-device", metavar="DEVICE", help="torch device for texture maps (default cpu)")


def print_summary(metrics, out):
    def v(k):
        m = metrics[k]
        lo, hi = m["ci95"]
        f = (lambda x: "n/a" if x is None else f"{x:.2f}")
        return f"{f(m['value'])} [{f(lo)}, {f(hi)}]"

    cv = metrics.get("cv") or {"scheme": "lopo"}
    scheme = "LOPO" if cv["scheme"] == "lopo" else f"{cv['scheme']}:{cv['k']}"
    print(f"twin {scheme} AUC {v('auc')}, sensitivity {v('sensitivity')}, specificity {v('specificity')}, "
          f"Brier {v('brier')}, calibration slope {v('calibration_slope')}")
    print(f"LKB AUC {v('lkb_auc')}, mean-dose AUC {v('mean_dose_auc')}; {metrics['n_trajectories']} trajectories; "
          f"median lead time {metrics['lead_time_fractions']['value']} fractions")
    print(f"report: {(out / 'report.html').resolve()}")


def run(args) -> int:
    import sys
    from pathlib import Path

    from COMPASSLib.pipeline import run as run_job
    from COMPASSLib.progress import console

    out = Path(args.output)
    settings = run_settings(args)
    if args.texture_maps:
        one = args.texture_maps[0] if len(args.texture_maps) == 1 else None
        settings["texture_maps"] = one if one in ("all", "warned") else args.texture_maps
    for key in ("texture_fractions", "texture_device"):
        if getattr(args, key):
            settings[key] = getattr(args, key)
    metrics = run_job(args.cohort, out, settings, progress=console(sys.stdout))
    print_summary(metrics, out)
    return 1 if metrics["provenance"].get("feature_failures") else 0
