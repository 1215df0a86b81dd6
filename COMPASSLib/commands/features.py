"""`compass features COHORT -o features.csv`: the per-organ, per-fraction feature table."""
from __future__ import annotations

import sys
from pathlib import Path

HELP = "per-organ, per-fraction feature table (BED kinetics, DVH, dosiomics, CT/PET radiomics, clinical)"
DESCRIPTION = (HELP + ". Writes one row per patient x organ x fraction (CSV, or Parquet for a .parquet "
               "output) and a sidecar JSON (settings, versions, input checksums) beside it. "
               "Columns: see docs/features.md.")


def add_arguments(parser):
    parser.add_argument("cohort", help="cohort.json (or the folder holding it)")
    parser.add_argument("-o", "--output", required=True, help="output table: .csv or .parquet")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes over patients (default 1)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask distributed scheduler address (e.g. tcp://host:8786): run on that cluster")
    parser.add_argument("--profile", choices=("fast", "full"), default=None,
                        help="full (default): everything; fast: BED/DVH kinetics and PET first-order/SUV only")
    parser.add_argument("--settings", metavar="FILE", help="feature settings (YAML/JSON); --profile wins over it")
    parser.add_argument("--clinical", metavar="CSV", help="per-fraction clinical data (patient, fraction, ...) "
                                                          "joined as clin_* columns")
    parser.add_argument("--cache", metavar="DIR", help="per patient-fraction cache: reruns compute only what changed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from COMPASSLib.atomic import atomic_path, check_output, json_text
    from COMPASSLib.errors import FeatureError, InputError
    from COMPASSLib.features.settings import FeatureSettings
    from COMPASSLib.features.table import extract_cohort
    from COMPASSLib.progress import console
    from COMPASSLib.provenance import record, sha256_file

    out = Path(args.output)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise InputError("output must end in .csv or .parquet", file=out)
    check_output(out, "output table", folder=False)
    check_output(sidecar_path(out), "sidecar JSON beside the output table", folder=False)
    if args.cache:
        check_output(args.cache, "feature cache folder")
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1 (got {args.workers})")
    if args.settings:
        settings = FeatureSettings.load(args.settings, profile=args.profile)
    else:
        settings = FeatureSettings(profile=args.profile or "full")

    table = extract_cohort(args.cohort, settings, workers=args.workers, scheduler=args.scheduler,
                           cache_dir=args.cache, progress=None if args.no_progress else console(), clinical=args.clinical)
    if table.empty:   # no table at all rather than an empty one (a failed run leaves no output)
        failures = "; ".join(f"patient {p} not extracted: {m}" for p, m in (table.attrs.get("failures") or {}).items())
        raise FeatureError("no feature rows: " + (failures or "no scored organ has a contour (see the warnings)"))
    attrs = dict(table.attrs)
    table.attrs.clear()   # pandas would try to serialise attrs into the Parquet metadata
    # the table and its sidecar whole or not at all: both written to temporary files beside them, renamed
    # (sidecar, then table) only when both are complete; an error leaves the earlier pair as it was
    with atomic_path(out) as tmp, atomic_path(sidecar_path(out)) as tmp_sidecar:
        if out.suffix.lower() == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
        inputs = {"cohort": str(Path(args.cohort).resolve()), "fractions_sha256": attrs["inputs"]}
        if args.clinical:
            inputs["clinical"] = {"path": str(Path(args.clinical).resolve()), "sha256": sha256_file(args.clinical)}
        side = record(settings=attrs["settings"], inputs=inputs, output=out.name, rows=len(table),
                      columns=list(table.columns), organs=attrs["organs"], failures=attrs["failures"],
                      computed=attrs["computed"], scheduler=args.scheduler, workers=args.workers)
        tmp_sidecar.write_bytes(json_text(side).encode("utf-8"))
    print(f"wrote {out} ({len(table)} rows, {table.shape[1]} columns) and {sidecar_path(out).name}")
    if attrs["failures"]:
        for patient, message in attrs["failures"].items():
            print(f"compass features: error: patient {patient} not extracted: {message}", file=sys.stderr)
        return 2
    return 0


def sidecar_path(out) -> Path:
    """features.csv -> features.csv.json (two tables of one stem never share a sidecar)."""
    out = Path(out)
    return out.with_name(out.name + ".json")
