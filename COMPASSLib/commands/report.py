"""`compass report OUT`: regenerate OUT/report.html from the files `compass run` wrote."""
from __future__ import annotations

HELP = "regenerate the HTML report of a `compass run` output folder"


def add_arguments(parser):
    parser.add_argument("output", metavar="OUT", help="output folder of `compass run`")
    parser.add_argument("--no-images", dest="images", action="store_false", default=None,
                        help="leave out the slice renders of warned organs (default: rendered by Slicer's slice "
                             "views where slicer-core is installed, unless $COMPASS_REPORT_IMAGES=0)")


def run(args) -> int:
    from COMPASSLib.atomic import check_output
    from COMPASSLib.report import write_report

    check_output(args.output, "output folder of `compass run`")
    print(f"report: {write_report(args.output, args.images).resolve()}")
    return 0
