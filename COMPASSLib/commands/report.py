"""`compass report OUT`: regenerate OUT/report.html from the files `compass run` wrote."""
from __future__ import annotations

HELP = "regenerate the HTML report of a `compass run` output folder"


def add_arguments(parser):
    parser.add_argument("output", metavar="OUT", help="output folder of `compass run`")


def run(args) -> int:
    from COMPASSLib.atomic import check_output
    from COMPASSLib.report import write_report

    check_output(args.output, "output folder of `compass run`")
    print(f"report: {write_report(args.output).resolve()}")
    return 0
