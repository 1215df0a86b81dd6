"""Batch entry point: run COMPASS on a cohort and write the results and one Slicer scene per patient.

    Slicer --no-main-window --python-script <extension>/COMPASSLib/batch.py --cohort DIR --out DIR
    python -m COMPASSLib.batch --cohort DIR --out DIR          (plain Python with the slicer-core wheel)

Steps: `COMPASSLib.pipeline.run` on the cohort (features, twin, risk.csv, metrics.json, model/), unless
`--risk` gives an existing risk.csv; then for each patient a scene with the fraction series (CT, PET,
dose, organs, BED/EQD2 as Sequences over fractions), the risk table and chart, saved as
OUT/scenes/<patient>.mrb. Exit codes: 0 done, 1 bad arguments, 2 a COMPASS error (printed on one line),
130 interrupted. The core work never needs `slicer.app`.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (Slicer's --python-script, or `python .../batch.py`): make the folder that holds
    # COMPASSLib importable (source checkout, or Slicer's scripted-modules folder of the extension), and
    # drop the script's own folder, whose subpackages (io, ...) would shadow top-level modules.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from COMPASSLib.twin import operating_point  # noqa: E402
from COMPASSLib.errors import CompassError, InputError  # noqa: E402

log = logging.getLogger("COMPASSLib.batch")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="COMPASS batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--cohort", required=True, type=Path, help="cohort folder or its cohort.json")
    p.add_argument("--out", required=True, type=Path, help="output folder (results and scenes/)")
    p.add_argument("--model", type=Path, default=None,
                   help="trained model folder (`compass run`'s model/) to score with instead of training")
    p.add_argument("--risk", type=Path, default=None,
                   help="existing risk.csv (patient, organ, fraction, risk, ci_low, ci_high, warning): "
                        "skip the pipeline and only build the scenes")
    p.add_argument("--patients", nargs="+", default=None, help="only these patient IDs (default: all)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="torch device for the twin and texture maps (auto: GPU when present)")
    p.add_argument("--profile", choices=("fast", "full"), default="full", help="feature profile of the pipeline")
    operating_point.add_arguments(p)   # as compass run: the warning's operating point when the twin is trained
    p.add_argument("--workers", type=int, default=1, help="feature extraction processes")
    p.add_argument("--reference", choices=("ct", "dose"), default="ct", help="grid the images are put on")
    p.add_argument("--no-bed", action="store_true", help="do not add cumulative BED/EQD2 maps to the scenes")
    p.add_argument("--no-scenes", action="store_true", help="run the pipeline only")
    p.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="refuse operations estimated to need more memory than SIZE (8G, 512M, 50%%, off; "
                        "default $COMPASS_MEMORY_LIMIT, else 80%% of the available memory)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def _say(message: str) -> None:
    print(f"COMPASS batch: {message}", flush=True)


def run_pipeline(args, cohort) -> Path:
    """`compass run` on the cohort, or with --model scoring every fraction by a trained twin;
    returns the risk.csv written into --out."""
    from COMPASSLib import pipeline
    from COMPASSLib.devices import resolve_device
    from COMPASSLib.progress import console

    device = resolve_device(args.device)
    if args.model is None:
        pipeline.run(cohort, args.out, {"profile": args.profile, "workers": args.workers,
                                        "twin": {"device": device, **operating_point.settings(args)}},
                     progress=console(sys.stdout))
        return args.out / "risk.csv"
    if args.patients:   # scoring needs only the patients asked for (training needs them all)
        cohort = cohort.subset(args.patients)
    pipeline.score(args.model, cohort, args.out, workers=args.workers, device=device, progress=console(sys.stdout))
    return args.out / "risk.csv"


def patient_scene(cohort, patient_id: str, risk, out_dir: Path, reference="ct", bed=True, progress=None) -> Path:
    """Build one patient's scene (fraction series, BED/EQD2, risk table and chart), save its .mrb and
    free the scene again, in the Slicer application as on slicer-core: a batch run holds one patient's
    voxels at a time, however many patients it writes."""
    from COMPASSLib import mrml

    scene = mrml.new_scene()
    try:
        mrml.load_patient(cohort, patient_id, scene, reference=reference, risk=risk, bed=bed, progress=progress)
        return mrml.save_scene(out_dir / "scenes" / f"{patient_id}.mrb", scene)
    finally:
        mrml.release_scene(scene)


def write_scenes(cohort, patients, risk, out_dir: Path, reference="ct", bed=True, after_each=None) -> list:
    """One .mrb per patient (patient_scene); `after_each(patient_id, path)` is called after each one."""
    scenes = []
    for i, pid in enumerate(patients):
        log.info("scene %d/%d: %s", i + 1, len(patients), pid)
        scenes.append(patient_scene(cohort, pid, risk, out_dir, reference, bed))
        _say(f"wrote {scenes[-1]}")
        if after_each is not None:
            after_each(pid, scenes[-1])
    return scenes


def run(args) -> int:
    """The batch job of parsed arguments (see the module doc); CompassError for bad input. The output
    folder, the cohort and the patients asked for are checked before any work."""
    from COMPASSLib import mrml
    from COMPASSLib.atomic import check_output, write_json
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.provenance import record, sha256_file

    if operating_point.settings(args) and (args.model is not None or args.risk is not None):
        raise InputError("--threshold-rule / --target-sensitivity set the threshold of a twin being trained; "
                         "a --model keeps its own and a --risk table has its warnings already")
    check_output(args.out, "output folder", staged=args.model is None and args.risk is None)
    cohort = Cohort.load(args.cohort)
    patients = args.patients or cohort.patient_ids
    unknown = sorted(set(patients) - set(cohort.patient_ids))
    if unknown:
        raise InputError(f"patients not in the cohort: {', '.join(unknown)}", file=cohort.root / "cohort.json")
    t0 = time.perf_counter()
    risk_path = args.risk if args.risk is not None else run_pipeline(args, cohort)
    risk = mrml.read_risk(risk_path)
    scenes = [] if args.no_scenes else write_scenes(cohort, patients, risk, args.out, args.reference,
                                                     not args.no_bed)
    write_json(args.out / "scenes" / "provenance.json" if scenes else args.out / "batch_provenance.json",
               record(settings={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                      inputs={"risk.csv": sha256_file(risk_path)},
                      scenes=[str(s.relative_to(args.out)) for s in scenes],
                      seconds=round(time.perf_counter() - t0, 3)))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:          # argparse exits; a --python-script caller wants a code
        return int(e.code or 0) and 1
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    from COMPASSLib.memory import limit_set

    try:
        with limit_set(args.memory_limit):
            return run(args)
    except CompassError as e:
        print(f"COMPASS batch: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:             # a disk that fills up, a folder removed during the run
        log.debug("%s", e, exc_info=True)
        where = f" [file {e.filename}]" if e.filename else ""
        print(f"COMPASS batch: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("COMPASS batch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    code = main(sys.argv[1:])
    try:   # inside Slicer (--python-script) the application must be told to quit with the code
        import slicer

        if hasattr(slicer, "app"):
            slicer.util.exit(code)
    except ImportError:
        pass
    sys.exit(code)
