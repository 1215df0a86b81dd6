"""The `compass` command (also `python -m COMPASSLib`).

Each sub-command lives in `COMPASSLib/commands/<name>.py` and provides:
    HELP: str                      one line for `compass --help`
    add_arguments(parser)          its options (keep imports light here)
    run(args) -> int               the work (heavy imports inside); returns the exit code
A `CompassError` is printed on one line (what is wrong, file, patient, fraction) with exit code 2.
Output paths are checked by each command before any work (`COMPASSLib.atomic.check_output`); an
OSError that still escapes (a disk that fills up, a folder removed during the run) is printed the same
way, with the traceback in the debug log (-vv).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from COMPASSLib import __version__
from COMPASSLib.errors import CompassError
from COMPASSLib.memory import limit_set

# Order is the order of the pipeline, as `compass --help` lists it.
COMMANDS = ("demo", "synth", "scan", "bed", "dvh", "features", "texture", "run", "update", "whatif", "report", "view")


def _load(name):
    try:
        return importlib.import_module(f"COMPASSLib.commands.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"COMPASSLib.commands.{name}":
            return None  # command not part of this build
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compass",
        description="COMPASS: per-organ radiotherapy digital twin for early toxicity prediction.")
    parser.add_argument("--version", action="version", version=f"COMPASS {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--memory-limit", metavar="SIZE", default=None,
                        help="refuse operations estimated to need more memory than SIZE (8G, 512M, 50%%, off; "
                             "default $COMPASS_MEMORY_LIMIT, else 80%% of the available memory)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with limit_set(args.memory_limit):
            return int(args._run(args) or 0)
    except CompassError as e:
        print(f"compass {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        logging.getLogger(__name__).debug("%s", e, exc_info=True)
        where = f" [file {e.filename}]" if e.filename else ""
        print(f"compass {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"compass {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
