"""The warning's operating point as users set it: the `--threshold-rule` / `--target-sensitivity` options
that `compass run`, `compass demo` and the Slicer batch script share, and the twin settings they make
(CompassTwin threshold_rule, target_sensitivity; the rule itself is classifier.choose_threshold)."""
from __future__ import annotations

import argparse

from COMPASSLib.errors import InputError
from COMPASSLib.twin.classifier import THRESHOLD_RULES


def share(text):
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a number between 0 and 1, got {text!r}")
    return value


def add_arguments(parser):
    parser.add_argument("--threshold-rule", choices=THRESHOLD_RULES,
                        help="warning threshold: sensitivity (default: the highest threshold whose warnings catch "
                             "--target-sensitivity of the training trajectories' toxicities) or youden (Youden's J "
                             "on the training trajectories' last risk: misses and false alarms weighed alike)")
    parser.add_argument("--target-sensitivity", type=share, metavar="S",
                        help="the training sensitivity the warning threshold must reach (0 < S < 1; default 0.85); "
                             "implies --threshold-rule sensitivity (docs/twin.md: the measured trade-off)")


def settings(args) -> dict:
    """The twin settings of the options given (none given: {}, the twin's defaults)."""
    rule, target = args.threshold_rule, args.target_sensitivity
    if target is not None and rule == "youden":
        raise InputError("--target-sensitivity needs --threshold-rule sensitivity (Youden's J sets its own)")
    if target is not None:
        rule = "sensitivity"
    return {k: v for k, v in {"threshold_rule": rule, "target_sensitivity": target}.items() if v is not None}
