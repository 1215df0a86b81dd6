"""`compass scan DIR -o cohort.json`: group a DICOM tree by patient and fraction into a manifest."""
from __future__ import annotations

HELP = "walk a DICOM folder and write the cohort manifest (cohort.json)"
DESCRIPTION = ("Walk DIR, group DICOM files by patient and by fraction (RT fraction number or the day of "
               "the delivered dose), pick the planning CT, map ROI names to canonical organs and write a "
               "human-editable cohort manifest. Outcomes go in outcomes.csv beside it (not created here). "
               "A patient without RTDOSE gets its CT/PET days as fractions without dose and one warning line "
               "naming them (`compass features`/`run` leave such a patient out); the manifest is still written "
               "for editing, unless --strict.")


def add_arguments(parser):
    parser.add_argument("directory", metavar="DIR", help="folder holding the DICOM files (searched recursively)")
    parser.add_argument("-o", "--output", metavar="COHORT_JSON", default=None,
                        help="manifest to write (default: DIR/cohort.json)")
    parser.add_argument("--strict", action="store_true",
                        help="write no manifest (exit status 2) when a patient has a fraction without dose")


def run(args) -> int:
    from pathlib import Path

    from COMPASSLib.atomic import check_output
    from COMPASSLib.errors import InputError
    from COMPASSLib.provenance import record
    from COMPASSLib.scan import missing_doses, scan

    output = Path(args.output) if args.output else Path(args.directory) / "cohort.json"
    if output.is_dir():
        output = output / "cohort.json"
    check_output(output, "manifest", folder=False)

    cohort = scan(args.directory, manifest_path=output)   # logs one warning per patient lacking doses
    lacking = missing_doses(cohort)
    if args.strict and lacking:
        raise InputError("--strict: no manifest written, fractions without dose: " + "; ".join(
            f"patient {pid} fraction {', '.join(str(f.index) for f in fs)}" for pid, fs in lacking.items()),
            file=args.directory)
    cohort.extra["provenance"] = record(settings={"directory": str(Path(args.directory).resolve())})
    path = cohort.save(output)
    n_fractions = sum(len(p.fractions) for p in cohort.patients)
    print(f"{path}: {len(cohort.patients)} patient(s), {n_fractions} fraction(s)"
          + (f"; {len(lacking)} patient(s) with fractions without dose (see the warnings)" if lacking else ""))
    outcomes = cohort.path(cohort.outcomes_file)
    if not outcomes.is_file():
        print(f"note: {outcomes} not found; write it (patient, organ, grade, onset_fraction) before `compass run`")
    return 0
