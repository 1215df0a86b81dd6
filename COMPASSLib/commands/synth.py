"""`compass synth OUT`: write the synthetic thorax cohort (DICOM + outcomes + manifest) into OUT, or, with
--counterfactual, one patient of such a cohort re-simulated under a changed rest of the course."""
from __future__ import annotations

HELP = "generate the synthetic thorax cohort (CT, PET, RTDOSE, RTSTRUCT per fraction, outcomes)"
DESCRIPTION = (HELP + ". Writes OUT/cohort.json, OUT/outcomes.csv, OUT/ground_truth.json (hidden model "
               "parameters, read by nothing in the pipeline) and one DICOM folder per patient. "
               "The same seed gives byte-identical files, wherever the patients were made. With "
               "--counterfactual COHORT --patient ID --after K: that patient's course with the fractions after "
               "K changed (--scale, --fractions), fractions 1..K byte-identical to COHORT's. "
               "See docs/synthetic_cohort.md.")

# Cohort settings and their defaults (None on the command line, so that --counterfactual, which takes them
# from its cohort, can tell that one was given).
DEFAULTS = {"patients": 8, "fractions": 5, "seed": 0, "size": "full", "readout": "pet"}


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder (created; existing files are overwritten)")
    parser.add_argument("--patients", type=int, help="number of patients (default 8)")
    parser.add_argument("--fractions", type=int,
                        help="fractions per patient (default 5: SBRT, 50/55/60 Gy split into them; from 25-28 "
                             "fractions on conventional 2.0/2.1/2.2 Gy per fraction, e.g. 30). With "
                             "--counterfactual: the course's new fraction count (the remaining dose split "
                             "over the fractions after K; default as in COHORT)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--size", choices=("small", "full"),
                        help="grid: small = 6 mm coarse grid for fast tests, full = 3 mm thorax (default)")
    parser.add_argument("--readout", choices=("pet", "ct"),
                        help="which scan shows the hidden radiosensitivity: pet = the inflamed organ's FDG "
                             "uptake rises (default), ct = its CT density rises and the PET stays at baseline "
                             "(a check that the twin is not shaped after one formula)")
    parser.add_argument("--workers", type=int, default=1, help="patients made side by side in local processes")
    parser.add_argument("--scheduler", metavar="ADDR",
                        help="Dask scheduler address (tcp://host:8786): patients made on its workers, which "
                             "must see OUT (shared file system); the same bytes as a serial run")
    cf = parser.add_argument_group("counterfactual (the what-if ground truth)")
    cf.add_argument("--counterfactual", metavar="COHORT",
                    help="a cohort written by `compass synth`: re-simulate one of its patients into OUT")
    cf.add_argument("--patient", metavar="ID", help="the patient to re-simulate (e.g. SYN003)")
    cf.add_argument("--after", type=int, metavar="K",
                    help="fractions 1..K as delivered in COHORT; the later ones under the scenario")
    cf.add_argument("--scale", action="append", default=[], metavar="ORGAN=F",
                    help="the remaining fractions' dose to ORGAN times F (>= 0; repeat for more organs; "
                         "SpinalCord, Heart, Esophagus)")


def parse_scale(items) -> dict:
    """ORGAN=F items of --scale -> {organ: factor}, each parsed as `compass whatif --scale` parses it
    (twin.whatif.parse_scale: one syntax for both); InputError for an organ given twice (the organs are
    checked by synth.counterfactual.check_scale)."""
    from COMPASSLib.errors import InputError
    from COMPASSLib.twin.whatif import parse_scale as parse_one

    scale = {}
    for item in items:
        for organ, factor in parse_one(item).scale:
            if organ in scale:
                raise InputError(f"--scale names {organ} twice")
            scale[organ] = factor
    return scale


def run(args) -> int:
    from COMPASSLib.atomic import check_output
    from COMPASSLib.errors import InputError
    from COMPASSLib.progress import console

    if args.counterfactual is not None:
        return _counterfactual(args)
    given = [f"--{name}" for name in ("patient", "after") if getattr(args, name) is not None]
    if given or args.scale:
        raise InputError(f"{', '.join(given + ['--scale'] * bool(args.scale))} need --counterfactual COHORT")
    settings = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in DEFAULTS.items()}
    check_output(args.out, "output folder")
    from COMPASSLib.synth import generate_cohort

    path = generate_cohort(args.out, progress=console(), workers=args.workers, scheduler=args.scheduler,
                           **settings)
    print(path)
    return 0


def _counterfactual(args) -> int:
    from COMPASSLib.atomic import check_output
    from COMPASSLib.errors import InputError
    from COMPASSLib.synth.counterfactual import resimulate_patient

    fixed = [f"--{k}" for k in ("patients", "seed", "size", "readout", "scheduler") if getattr(args, k) is not None]
    fixed += ["--workers"] * (args.workers != 1)
    if fixed:
        raise InputError(f"{', '.join(fixed)}: not for --counterfactual (one patient, the settings of its "
                         "cohort); leave them out")
    missing = [f"--{k}" for k in ("patient", "after") if getattr(args, k) is None]
    if missing:
        raise InputError(f"--counterfactual needs {' and '.join(missing)}")
    scale = parse_scale(args.scale)
    check_output(args.out, "output folder", staged=True)
    path = resimulate_patient(args.counterfactual, args.patient, args.after, args.out, scale=scale,
                              fractions=args.fractions)
    print(path)
    return 0
