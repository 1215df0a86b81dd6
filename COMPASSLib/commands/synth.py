"""`compass synth OUT`: write the synthetic thorax cohort (DICOM + outcomes + manifest) into OUT."""
from __future__ import annotations

HELP = "generate the synthetic thorax cohort (CT, PET, RTDOSE, RTSTRUCT per fraction, outcomes)"
DESCRIPTION = (HELP + ". Writes OUT/cohort.json, OUT/outcomes.csv, OUT/ground_truth.json (hidden model "
               "parameters, read by nothing in the pipeline) and one DICOM folder per patient. "
               "The same seed gives byte-identical files. See docs/synthetic_cohort.md.")


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder (created; existing files are overwritten)")
    parser.add_argument("--patients", type=int, default=8, help="number of patients (default 8)")
    parser.add_argument("--fractions", type=int, default=5, help="fractions per patient (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", choices=("small", "full"), default="full",
                        help="grid: small = 6 mm coarse grid for fast tests, full = 3 mm thorax (default)")
    parser.add_argument("--readout", choices=("pet", "ct"), default="pet",
                        help="which scan shows the hidden radiosensitivity: pet = the inflamed organ's FDG "
                             "uptake rises (default), ct = its CT density rises and the PET stays at baseline "
                             "(a check that the twin is not shaped after one formula)")


def run(args) -> int:
    from COMPASSLib.atomic import check_output
    from COMPASSLib.progress import console
    from COMPASSLib.synth import generate_cohort

    check_output(args.out, "output folder")

    path = generate_cohort(args.out, patients=args.patients, fractions=args.fractions, seed=args.seed,
                           size=args.size, progress=console(), readout=args.readout)
    print(path)
    return 0
