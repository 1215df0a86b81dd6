"""`compass whatif MODEL PATIENT_DIR --after K [--scale ORGAN=F ...] [--plan RTDOSE ...] [--fractions N] -o OUT`:
the twin's projection of the remaining fractions under changed plans (COMPASSLib.twin.whatif)."""
from __future__ import annotations

HELP = "project the risk of the remaining fractions after fraction K under changed plans (what if)"
DESCRIPTION = (HELP + ". Scenarios: as_planned (always), each --scale, each --plan, --fractions. Writes "
               "OUT/whatif.csv, whatif.json (settings, provenance) and whatif.png, whole or not at all.")


def add_arguments(parser):
    from COMPASSLib.commands.update import add_model_and_patient

    add_model_and_patient(parser)
    parser.add_argument("--after", metavar="K", type=int, required=True, help="fractions delivered (1..K)")
    parser.add_argument("--scale", metavar="ORGAN=F", action="append", default=[],
                        help="scale the dose inside ORGAN by F for the remaining fractions (Heart=0.5; "
                             "Heart=0.5,Esophagus=0.8 scales both in one scenario); repeatable")
    parser.add_argument("--plan", metavar="RTDOSE", action="append", default=[],
                        help="a replacement per-fraction RTDOSE for every remaining fraction (comma-separated "
                             "files: one per remaining fraction); repeatable")
    parser.add_argument("--fractions", metavar="N", type=int,
                        help="the course in N fractions: the as-planned remaining physical dose split over N-K")
    parser.add_argument("--planned", metavar="N", type=int,
                        help="planned number of fractions of the course (default: the patient's fractions on file)")
    parser.add_argument("--training-features", metavar="CSV",
                        help="the twin's training feature table for the forecast residuals (default MODEL/../features.csv)")
    parser.add_argument("--draws", type=int, default=None, help="forecast residual draws per trajectory (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the forecast draws (default 0)")
    parser.add_argument("-o", "--out", metavar="OUT", required=True, help="output folder")


def run(args) -> int:
    from pathlib import Path

    from COMPASSLib.atomic import check_output, staged_dir, write_json
    from COMPASSLib.pipeline import CSV_FLOAT_FORMAT, check_outputs, load_patients
    from COMPASSLib.provenance import record, sha256_file
    from COMPASSLib.twin import whatif
    from COMPASSLib.twin.whatif_plot import plot_projection

    scenarios = whatif.scenarios_from_options(args.scale, args.plan, args.fractions)   # syntax first
    out = Path(args.out)
    check_output(out, "output folder", staged=True)
    cache = Path(args.cache) if args.cache else Path(args.model).resolve().parent / "cache"
    check_outputs(None, cache)
    draws = whatif.DEFAULT_DRAWS if args.draws is None else args.draws
    if draws < 0:
        from COMPASSLib.errors import InputError

        raise InputError(f"--draws must be >= 0, got {draws}")
    frame = whatif.project(args.model, load_patients(args.patient_dir), args.after, scenarios, planned=args.planned,
                           cache_dir=cache, training=args.training_features or "auto", draws=draws, seed=args.seed)
    weights = Path(args.model) / "weights.safetensors"
    with staged_dir(out) as stage:
        from COMPASSLib.atomic import atomic_path

        with atomic_path(stage / "whatif.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
        write_json(stage / "whatif.json", {
            "columns": list(frame.columns), "rows": frame.to_dict("records"),
            "provenance": record(frame.attrs["settings"], inputs={
                "model": str(Path(args.model).resolve()),
                "weights.safetensors": sha256_file(weights) if weights.is_file() else None,
                "patient_dir": str(Path(args.patient_dir).resolve()),
                "plans": {p: sha256_file(p) for s in scenarios for p in s.plan}})})
        plot_projection(frame, stage / "whatif.png")
    for (scenario, patient, organ), g in frame.groupby(["scenario", "patient", "organ"], sort=False):
        last = g.iloc[-1]
        print(f"{patient} {organ:<11} {scenario:<16} after fraction {int(last.fraction)}: risk {last.risk:.3f} "
              f"[{last.ci_low:.3f}, {last.ci_high:.3f}] BED mean {last.bed_mean_gy:.2f} Gy, LKB {last.lkb_ntcp:.3f}")
    print(f"whatif: {out / 'whatif.csv'}")
    return 0
