"""Issue 15, "nothing wrong passes silently": the generated bad-input corpus (Testing/corpus/).

Every case is built at test time from the session's small synthetic cohort and ../shared/data (nothing is
committed but the generator) and run in-process; each must end as expected: refused with a CompassError
whose one-line message names what is wrong and where, or with the clean input's result. Checked for every
case too: its inputs are unchanged and a failed case leaves its output absent or as it was. The outcome
table is printed; `COMPASS_CORPUS_README=1` writes it into Testing/corpus/README.md.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from corpus.build import (OK, SAME, Call, Case, Workspace, failure_lines, outcome_table, refused, run_case,
                          run_corpus, tree_hashes)
from corpus.cases import all_cases

README = Path(__file__).resolve().parent / "corpus" / "README.md"
BEGIN, END = "<!-- BEGIN generated outcome table -->", "<!-- END generated outcome table -->"


def test_corpus_outcomes(small_cohort, shared_data, tmp_path_factory, capsys):
    ws = Workspace(tmp_path_factory.mktemp("corpus"), small_cohort, shared_data)
    inputs = [ws.cohort.root, shared_data / "dicompyler_example", shared_data / "ibsi" / "sts" / "STS_002"]
    before = tree_hashes(*inputs)
    t0 = time.perf_counter()
    results = run_corpus(all_cases(), ws)
    seconds = time.perf_counter() - t0
    table = outcome_table(results)
    failures = failure_lines(results)
    with capsys.disabled():
        print(f"\nbad-input corpus: {len(results)} cases in {seconds:.1f} s\n{table}")
        for line in failures:
            print("  FAIL " + line)
    if os.environ.get("COMPASS_CORPUS_README"):
        write_readme(results, table, seconds)
    assert len(results) >= 150
    assert tree_hashes(*inputs) == before, "the clean cohort or ../shared/data changed"
    assert not failures, f"{len(failures)} case(s) failed:\n" + "\n".join(failures)


def write_readme(results, table, seconds) -> None:
    def expected(case):
        return "refused: " + ", ".join(case.expect.words) if case.expect.kind == "refused" else "same result"

    cases = "\n".join(f"| {r.case.group} | `{r.case.name}` | {expected(r.case)} | {r.outcome} | {r.case.note} |"
                      for r in results)
    block = (f"{BEGIN}\n{len(results)} cases, {seconds:.0f} s (one run of `COMPASS_CORPUS_README=1 .venv/bin/python "
             f"-m pytest Testing/test_corpus.py`):\n\n{table}\n\n<details><summary>every case</summary>\n\n"
             "| reader / command | case | expected | outcome | note |\n|---|---|---|---|---|\n"
             f"{cases}\n\n</details>\n{END}")
    text = README.read_text()
    README.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S))


def test_the_runner_tells_every_failure_apart(tmp_path):
    """The classification itself: a traceback, a silent result, a refusal of a good input, a message without
    its key words, a half-written output and a modified input are each reported as such."""
    from COMPASSLib.errors import InputError

    class Bare:     # a workspace without clean inputs (the fake cases need none)
        root = tmp_path

    def case(name, fn, expect, out=False, check=None):
        def build(ws, d):
            target = d / "out" if out else None
            return Call("reader", lambda: fn(d), out=target, check=check)
        return Case(name, "self-test", build, expect)

    def half_written(d):
        (d / "out").mkdir()
        (d / "out" / "part.csv").write_text("half\n")
        raise InputError("failed midway", file=d / "in" / "x", patient="P", fraction=1)

    def modifies(d):
        (d / "in" / "x").write_text("changed\n")
        raise InputError("bad x", file=d / "in" / "x", patient="P", fraction=1)

    def raises(error):
        def fn(d):
            raise error
        return fn

    def wrong(value):
        raise AssertionError("differs")

    expected = {
        "TRACEBACK": case("a", raises(ValueError("boom")), refused("x")),
        "SILENT": case("b", lambda d: 1, refused("x")),
        "SILENT ": case("c", lambda d: 1, SAME, check=wrong),
        "FALSE ALARM": case("d", raises(InputError("no", file="f", patient="P", fraction=1)), SAME),
        "BAD MESSAGE": case("e", raises(InputError("something", file="f", patient="P", fraction=1)),
                            refused("dose")),
        "BAD MESSAGE ": case("f", raises(InputError("dose wrong", file="f")), refused("dose")),
        "HALF-WRITTEN": case("g", half_written, refused("failed midway"), out=True),
        "refused": case("h", raises(InputError("dose wrong", file="f", patient="P", fraction=1)), refused("DOSE")),
        "correct": case("i", lambda d: 1, SAME),
    }
    for outcome, c in expected.items():
        assert run_case(c, Bare()).outcome == outcome.strip(), outcome
    (tmp_path / "cases" / "j" / "in").mkdir(parents=True)
    (tmp_path / "cases" / "j" / "in" / "x").write_text("original\n")
    assert run_case(case("j", modifies, refused("bad x")), Bare()).outcome == "MODIFIED"
    assert set(OK) == {"refused", "correct"}
