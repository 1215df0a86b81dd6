"""`compass update MODEL PATIENT_DIR`: the living twin -- score a patient as each new fraction arrives."""
from __future__ import annotations

HELP = "score a patient's fractions so far with a saved twin: current risk and warning per organ"
DESCRIPTION = (HELP + ". Only fractions not yet in the feature cache (default: MODEL/../cache, the one "
               "`compass run` filled) are computed.")


def add_model_and_patient(parser):
    """MODEL PATIENT_DIR [--cache DIR]: what every command scoring one patient with a saved twin takes."""
    parser.add_argument("model", metavar="MODEL", help="model folder written by `compass run` (OUT/model)")
    parser.add_argument("patient_dir", metavar="PATIENT_DIR",
                        help="the patient's DICOM folder (scanned) or a folder with cohort.json")
    parser.add_argument("--cache", metavar="DIR", help="feature cache folder (default MODEL/../cache)")


def add_arguments(parser):
    add_model_and_patient(parser)
    parser.add_argument("--workers", type=int, default=1, help="feature extraction processes (default 1)")


def run(args) -> int:
    from COMPASSLib.pipeline import update

    latest, computed = update(args.model, args.patient_dir, cache_dir=args.cache, workers=args.workers)
    for patient, fractions in sorted(computed.items()):
        print(f"{patient}: computed fraction(s) {fractions or 'none (all cached)'}")
    for r in latest.itertuples(index=False):
        flag = "WARNING" if r.warning else "ok"
        print(f"{r.patient} {r.organ:<11} after fraction {r.fraction}: risk {r.risk:.3f} "
              f"[{r.ci_low:.3f}, {r.ci_high:.3f}] {flag:<7} top: {r.top_features}")
    return 0
