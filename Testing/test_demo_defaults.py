"""`compass demo`'s cohort: the twin benchmark's typical paper-sized cohort by default (seed 1004,
docs/twin.md), --cohort-seed for another, --seed alone seeding both as before."""
from COMPASSLib.cli import build_parser
from COMPASSLib.commands.demo import DEMO_COHORT_SEED, cohort_seed


def _seed(*argv):
    return cohort_seed(build_parser().parse_args(["demo", "OUT", *argv]))


def test_the_demo_cohort_is_the_benchmarks_typical_one_unless_asked_otherwise():
    assert DEMO_COHORT_SEED == 1004
    assert _seed() == 1004
    assert _seed("--seed", "7") == 7
    assert _seed("--cohort-seed", "3") == 3
    assert _seed("--seed", "7", "--cohort-seed", "3") == 3
    args = build_parser().parse_args(["demo", "OUT"])
    assert args.patients == 8 and args.fractions == 5
