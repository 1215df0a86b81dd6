"""`compass view OUT`: one patient's COMPASS scene and risk in the browser (COMPASSLib/webview.py)."""
from __future__ import annotations

HELP = "serve one patient's scene (Slicer's slice and 3D views), risk table and chart as a web page"
DESCRIPTION = (HELP + ". OUT is the output folder of `compass run` or of the batch script: its saved scene "
               "OUT/scenes/<patient>.mrb is shown, else the scene is built from the cohort (the path OUT/metrics.json "
               "records, or --cohort). Binds 127.0.0.1 unless --host says otherwise; on a department server "
               "serve it behind a reverse proxy with authentication (docs/view.md). Renders offscreen (EGL), "
               "no display needed. Ctrl-C stops it.")


def add_arguments(parser):
    parser.add_argument("output", metavar="OUT", help="output folder of `compass run` or of the batch script")
    parser.add_argument("--patient", metavar="ID", help="the patient to show (needed where OUT holds several)")
    parser.add_argument("--cohort", metavar="COHORT", help="cohort.json to build the scene from where OUT has no "
                                                           "saved scene (default: the cohort OUT/metrics.json records)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 for a department "
                             "server behind an authenticating reverse proxy)")


def run(args) -> int:
    from COMPASSLib.webview import ViewerApp

    app = ViewerApp(args.output, patient=args.patient, cohort=args.cohort)
    app.start(port=args.port, host=args.host,
              ready=lambda url: print(f"compass view: {app.patient.patient} at {url} (Ctrl-C stops)", flush=True))
    return 0
