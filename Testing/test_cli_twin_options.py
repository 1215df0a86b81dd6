"""Twin options of `compass demo` and `compass run`: the demo's cohort is the twin benchmark's typical
paper-sized cohort by default (seed 1004, docs/twin.md), --cohort-seed for another, --seed alone seeding both
as before; --target-sensitivity sets the warning threshold's rule and is checked on every path in."""
from COMPASSLib.cli import build_parser
from COMPASSLib.commands.demo import DEMO_COHORT_SEED, cohort_seed


def _seed(*argv):
    return cohort_seed(build_parser().parse_args(["demo", "OUT", *argv]))


def test_the_demo_settings_pass_the_run_checks_before_any_work():
    """The demo's settings as `compass run` gets them: workers filled in (every core, up to one per
    patient) before they are checked, so the default demo is never refused after writing its cohort."""
    import os

    import pytest

    from COMPASSLib.commands.demo import demo_settings
    from COMPASSLib.errors import InputError

    seed, settings = demo_settings(build_parser().parse_args(["demo", "OUT"]))
    assert seed == 1004 and settings["workers"] == max(1, min(os.cpu_count() or 1, 8))
    assert demo_settings(build_parser().parse_args(["demo", "OUT", "--workers", "1"]))[1]["workers"] == 1
    with pytest.raises(InputError, match="workers"):
        demo_settings(build_parser().parse_args(["demo", "OUT", "--workers", "0"]))


def test_the_demo_cohort_is_the_benchmarks_typical_one_unless_asked_otherwise():
    assert DEMO_COHORT_SEED == 1004
    assert _seed() == 1004
    assert _seed("--seed", "7") == 7
    assert _seed("--cohort-seed", "3") == 3
    assert _seed("--seed", "7", "--cohort-seed", "3") == 3
    args = build_parser().parse_args(["demo", "OUT"])
    assert args.patients == 8 and args.fractions == 5


def test_target_sensitivity_sets_the_threshold_rule_and_is_checked(capsys):
    import pytest

    from COMPASSLib.cli import main
    from COMPASSLib.commands.run import run_settings
    from COMPASSLib.errors import InputError, ModelError
    from COMPASSLib.twin.model import CompassTwin

    def twin(*argv):
        return run_settings(build_parser().parse_args(["run", "COHORT", "-o", "OUT", *argv]))["twin"]

    assert "threshold_rule" not in twin() and "target_sensitivity" not in twin()
    assert twin("--target-sensitivity", "0.85") == {"threshold_rule": "sensitivity", "target_sensitivity": 0.85}
    assert twin("--threshold-rule", "sensitivity") == {"threshold_rule": "sensitivity"}
    with pytest.raises(InputError, match="needs --threshold-rule sensitivity"):
        twin("--threshold-rule", "youden", "--target-sensitivity", "0.9")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "COHORT", "-o", "OUT", "--target-sensitivity", "1.5"])
    assert "between 0 and 1" in capsys.readouterr().err
    # the same rule for settings that arrive without the command line (a settings file, Python)
    for bad in ({"target_sensitivity": 0.0}, {"target_sensitivity": "0.9"}, {"threshold_rule": "max"}):
        with pytest.raises(ModelError, match="target_sensitivity|threshold_rule"):
            CompassTwin(**bad).fit(*_tiny())
    assert main(["run", "nowhere.json", "-o", "OUT", "--threshold-rule", "youden", "--target-sensitivity", "0.9"]) == 2
    assert "compass run: error: --target-sensitivity needs --threshold-rule sensitivity" in capsys.readouterr().err


def _tiny():
    import pandas as pd

    table = pd.DataFrame({"patient": ["P1", "P2"], "organ": ["Heart", "Heart"], "fraction": [1, 1],
                          "bed_mean_gy": [1.0, 2.0]})
    return table, pd.DataFrame({"patient": ["P1", "P2"], "organ": ["Heart", "Heart"], "grade": [0, 1]})
