"""`compass scan DIR -o cohort.json`: group a DICOM tree by patient and fraction into a manifest."""
from __future__ import annotations

HELP = "walk a DICOM folder and write the cohort manifest (cohort.json)"
DESCRIPTION = ("Walk DIR, group DICOM files by patient and by fraction (RT fraction number or the day of "
               "the delivered dose), pick the planning CT, map ROI names to canonical organs and write a "
               "human-editable cohort manifest. Outcomes go in outcomes.csv beside it (not created here).")


def add_arguments(parser):
    parser.add_argument("directory", metavar="DIR", help="folder holding the DICOM files (searched recursively)")
    parser.add_argument("-o", "--output", metavar="COHORT_JSON", default=None,
                        help="manifest to write (default: DIR/cohort.json)")


def run(args) -> int:
    from pathlib import Path

    from COMPASSLib.scan import scan

    output = Path(args.output) if args.output else Path(args.directory) / "cohort.json"
    if output.is_dir():
        output = output / "cohort.json"
    from COMPASSLib.provenance import record

    cohort = scan(args.directory, manifest_path=output)
    cohort.extra["provenance"] = record(settings={"directory": str(Path(args.directory).resolve())})
    path = cohort.save(output)
    n_fractions = sum(len(p.fractions) for p in cohort.patients)
    print(f"{path}: {len(cohort.patients)} patient(s), {n_fractions} fraction(s)")
    outcomes = cohort.path(cohort.outcomes_file)
    if not outcomes.is_file():
        print(f"note: {outcomes} not found; write it (patient, organ, grade, onset_fraction) before `compass run`")
    return 0
