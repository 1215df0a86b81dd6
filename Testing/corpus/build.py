"""The workspace the corpus cases are built in, and the runner that classifies their outcomes.

`Workspace(root, cohort_json, shared)`: the clean inputs (a small synthetic cohort, generated once per test
session by the `small_cohort` fixture, and ../shared/data), read only; every case copies what it changes
into its own folder `root/cases/<name>/in` and writes its outputs under `root/cases/<name>/out`. Clean
results a case is compared with (a clean read, a clean `compass features` table, a clean `compass run`)
are computed once, on first use (`Workspace.memo`).

`run_case(case, ws)` builds the case, hashes its inputs, snapshots its output path, runs it (a reader
in-process, `COMPASSLib.cli.main(argv)` or `COMPASSLib.batch.main(argv)`, stdout and stderr captured) and
returns a `Result` whose `outcome` is one of
- "refused"      a CompassError (exit status 2 from a door) whose one-line message holds the key words,
- "correct"      a result equal to the clean case's (the case's check passed),
and, each a failure of the case:
- "TRACEBACK"    an exception that is not a CompassError (or a feature failure reported as "unexpected X"),
- "SILENT"       a result where a refusal was expected, or a result that differs from the clean one,
- "FALSE ALARM"  a refusal of an input whose result should equal the clean one,
- "BAD MESSAGE"  a refusal of the wrong class or exit status, on several lines, or without the key words,
- "HALF-WRITTEN" a failed case whose output path is not absent or as it was (or a staging folder left),
- "MODIFIED"     a case whose inputs changed (hashes before and after differ),
- "BUILD ERROR"  the case could not be built (a bug of the corpus, not of COMPASS).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import re
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

OK = ("refused", "correct")
FAILURES = ("TRACEBACK", "SILENT", "FALSE ALARM", "BAD MESSAGE", "HALF-WRITTEN", "MODIFIED", "BUILD ERROR")
FAST = ["--profile", "fast", "--epochs", "5", "--bootstrap", "20"]


# --------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Expect:
    kind: str                     # "refused" or "same"
    words: tuple = ()             # key words the one-line message must hold (case-insensitive)
    error: type | None = None     # CompassError class a reader must raise (None: any CompassError)
    rc: int = 2                   # exit status of a door
    where: tuple = ("file", "patient", "fraction")   # what a reader's error must name (readers get all three)


def refused(*words, error=None, rc=2, where=("file", "patient", "fraction")) -> Expect:
    return Expect("refused", tuple(words), error, rc, tuple(where))


SAME = Expect("same")


@dataclass
class Call:
    """What a case runs. door "reader": `target()` in-process; "cli" / "batch": `target` is the argv.
    `out`: the output path (file or folder) that must be absent or as it was after a failure.
    `check(value)`: for an expected-same case, raises AssertionError when the result differs from the
    clean one; `value` is what the reader returned, or (stdout, out) for a door."""
    door: str
    target: Any
    out: Path | None = None
    check: Callable | None = None


@dataclass
class Case:
    name: str
    group: str                    # the reader or command the case is counted under
    build: Callable               # build(ws, folder) -> Call
    expect: Expect
    note: str = ""


@dataclass
class Result:
    case: Case
    outcome: str
    detail: str = ""
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------- workspace
class Workspace:
    """Clean inputs and helpers to copy and mutate them (see the module doc)."""

    def __init__(self, root, cohort_json, shared):
        from COMPASSLib.cohort import Cohort
        from COMPASSLib.pipeline import write_subset

        self.root = Path(root)
        self.shared = Path(shared)
        self.cohort_json = Path(cohort_json)
        self.cohort = Cohort.load(cohort_json)
        self.patient = self.cohort.patients[0]
        self.pid = self.patient.id
        self.other = self.cohort.patients[1]
        f1 = self.patient.fractions[0]
        self.ct = self.cohort.paths(f1.ct)
        self.pet = self.cohort.paths(f1.pet)
        self.dose = self.cohort.path(f1.dose[0])
        self.dose2 = self.cohort.path(self.patient.fractions[1].dose[0])
        self.rtstruct = self.cohort.path(f1.rtstruct[0])
        self.other_dose = self.cohort.path(self.other.fractions[0].dose[0])
        self.other_rtstruct = self.cohort.path(self.other.fractions[0].rtstruct[0])
        clean = self.root / "clean"
        self.one = write_subset(self.cohort, clean / "one", fractions=1, patients=[self.pid])
        self.three = write_subset(self.cohort, clean / "three", fractions=1)
        self.cache = clean / "feature-cache"
        self._memo = {}

    # ---- clean results, computed once
    def memo(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def clean_read(self, kind):
        """The clean read of the fraction-1 files: 'ct', 'pet', 'dose' (float64 arrays + geometry) or
        'masks' (RTSTRUCT on the CT grid: {name: bool array})."""
        from COMPASSLib import io as cio

        def make():
            if kind == "masks":
                return {n: _array(m) > 0 for n, m in
                        cio.read_structures([self.rtstruct], self.ct_grid(), patient=self.pid, fraction=1).items()}
            files = {"ct": self.ct, "pet": self.pet, "dose": [self.dose]}[kind]
            return image_values(cio.read_volume(files, kind, patient=self.pid, fraction=1))
        return self.memo(("read", kind), make)

    def ct_grid(self):
        from COMPASSLib import io as cio

        return self.memo("ct_grid", lambda: cio.read_grid(self.ct, "ct"))

    def cli(self, argv, capture=True):
        """(exit status, stdout, stderr) of `compass argv` in-process (for the clean results)."""
        from COMPASSLib.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in argv])
        if rc != 0:
            raise AssertionError(f"clean `compass {' '.join(map(str, argv))}` failed ({rc}): {err.getvalue()}")
        return rc, out.getvalue(), err.getvalue()

    def clean_table(self, clinical=None):
        """The clean `compass features` table of the one-patient, one-fraction manifest (fast profile)."""
        def make():
            path = self.root / "clean" / ("table-clinical.csv" if clinical else "table.csv")
            argv = ["features", self.one, "-o", path, "--profile", "fast", "--no-progress", "--cache", self.cache]
            self.cli(argv + (["--clinical", clinical] if clinical else []))
            return read_table(path)
        return self.memo(("table", str(clinical)), make)

    def clean_run(self) -> Path:
        """OUT of a clean `compass run` of three patients x one fraction (fast, 5 epochs, 20 bootstrap)."""
        def make():
            out = self.root / "clean" / "run"
            self.cli(["run", self.three, "-o", out, *FAST])
            return out
        return self.memo("run", make)

    # ---- copying and mutating
    @staticmethod
    def copy(files, folder) -> list:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for f in files:
            target = folder / Path(f).name
            shutil.copyfile(f, target)
            out.append(target)
        return out

    def edit(self, files, folder, fn, which=None) -> list:
        """Copies of `files` in `folder`, fn(ds, i) applied to those whose index is in `which` (all when
        None; an int for one) and saved; fn may return False to delete that file."""
        import pydicom

        which = range(len(files)) if which is None else ([which] if isinstance(which, int) else which)
        paths = self.copy(files, folder)
        if fn is None:
            return paths
        for i in which:
            ds = pydicom.dcmread(paths[i])
            if fn(ds, i) is False:
                paths[i].unlink()
                continue
            ds.save_as(paths[i])
        return [p for p in paths if p.exists()]

    def manifest_dict(self, source=None) -> dict:
        from COMPASSLib.cohort import Cohort

        return copy.deepcopy(Cohort.load(source or self.one).to_dict())

    @staticmethod
    def write_manifest(folder, d, outcomes_text=None) -> Path:
        """cohort.json holding `d` (a dict, or text written as it is) in `folder`; with `outcomes_text` an
        outcomes.csv beside it that the manifest names."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if outcomes_text is not None:
            (folder / "outcomes.csv").write_bytes(outcomes_text if isinstance(outcomes_text, bytes)
                                                  else outcomes_text.encode())
            if isinstance(d, dict):
                d = {**d, "outcomes": "outcomes.csv"}
        path = folder / "cohort.json"
        path.write_text(d if isinstance(d, str) else json.dumps(d, indent=1))
        return path

    def outcomes_text(self) -> str:
        return self.cohort.path(self.cohort.outcomes_file).read_text()


# --------------------------------------------------------------------------------------------- comparing
def _array(image):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)


def image_values(image) -> dict:
    return {"array": _array(image).astype(np.float64), "origin": image.GetOrigin(), "spacing": image.GetSpacing(),
            "direction": image.GetDirection()}


def same_image(result, clean, scale=1.0, rtol=1e-6, atol=1e-6, geometry_atol=1e-6) -> None:
    got = image_values(result)
    assert got["array"].shape == clean["array"].shape, f"shape {got['array'].shape} != {clean['array'].shape}"
    for k in ("origin", "spacing", "direction"):
        np.testing.assert_allclose(got[k], clean[k], rtol=0, atol=geometry_atol, err_msg=k)
    np.testing.assert_allclose(got["array"], clean["array"] * scale, rtol=rtol, atol=atol)


def same_masks(result, clean) -> None:
    assert sorted(result) == sorted(clean), f"ROIs {sorted(result)} != {sorted(clean)}"
    for name, mask in result.items():
        assert (np.asarray(_array(mask)) > 0).tolist() == clean[name].tolist(), f"mask {name} differs"


def read_table(path):
    import pandas as pd

    return pd.read_csv(path)


def same_table(got, clean, rtol=1e-9) -> None:
    import pandas as pd

    assert list(got.columns) == list(clean.columns), "columns differ"
    assert len(got) == len(clean), f"{len(got)} rows, clean {len(clean)}"
    pd.testing.assert_frame_equal(got.reset_index(drop=True), clean.reset_index(drop=True), rtol=rtol,
                                  check_dtype=False)


# --------------------------------------------------------------------------------------------- hashing
def tree_hashes(*paths) -> dict:
    """sha256 of every file under `paths` (files or folders)."""
    out = {}
    for root in paths:
        root = Path(root)
        if not root.exists():
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def tree_stats(*paths) -> dict:
    """(size, mtime) of every file under `paths`: a cheap per-case check that shared inputs stay as they are."""
    out = {}
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            st = f.stat()
            out[str(f)] = (st.st_size, st.st_mtime_ns)
    return out


def snapshot(path) -> object:
    """What is at `path` now: None (absent), the hashes of a folder's files, or a file's hash."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                for p in sorted(path.rglob("*"))}
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _staging_left(out) -> list:
    if out is None:
        return []
    out = Path(out)
    folders = [out.parent] + ([out] if out.is_dir() else [])
    return [str(p) for f in folders if f.is_dir() for p in f.iterdir() if ".partial-" in p.name]


# --------------------------------------------------------------------------------------------- running
def _door(call):
    """(exit status, stdout, stderr, exception) of a door call; exceptions other than SystemExit escape to
    the caller as the fourth element."""
    if call.door == "cli":
        from COMPASSLib.cli import main
    else:
        from COMPASSLib.batch import main
    out, err = io.StringIO(), io.StringIO()
    exc = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in call.target])
        except SystemExit as e:     # argparse usage errors
            rc = e.code if isinstance(e.code, int) else 2
        except Exception as e:  # noqa: BLE001 - a traceback is what the corpus looks for
            rc, exc = None, e
    return rc, out.getvalue(), err.getvalue(), exc


def _words_missing(text, words) -> list:
    low = text.lower()
    return [w for w in words if str(w).lower() not in low]


def _judge_error_line(case, call, rc, err) -> tuple:
    """(outcome, detail) of a door that exited non-zero."""
    prefix = "compass " if call.door == "cli" else "COMPASS batch: error:"
    lines = [line for line in err.splitlines() if "error:" in line]
    unexpected = re.search(r"unexpected (\w+(Error|Exception|Warning))", err)
    if unexpected:
        return "TRACEBACK", f"hidden traceback reported as a failure: {lines[0] if lines else err.strip()[:300]}"
    if "Traceback (most recent call last)" in err:
        return "TRACEBACK", err.strip()[-600:]
    if case.expect.kind != "refused":
        return "FALSE ALARM", f"exit {rc}: {' | '.join(lines) or err.strip()[:300]}"
    if rc != case.expect.rc:
        return "BAD MESSAGE", f"exit status {rc}, expected {case.expect.rc}: {err.strip()[:300]}"
    if len(lines) != 1 or not lines[0].startswith(prefix):
        return "BAD MESSAGE", f"{len(lines)} error line(s): {err.strip()[:400]}"
    missing = _words_missing(lines[0], case.expect.words)
    if missing:
        return "BAD MESSAGE", f"message lacks {missing}: {lines[0]}"
    return "refused", lines[0]


def _judge_reader_error(case, e) -> tuple:
    text = str(e)
    if case.expect.kind != "refused":
        return "FALSE ALARM", f"{type(e).__name__}: {text}"
    if case.expect.error is not None and not isinstance(e, case.expect.error):
        return "BAD MESSAGE", f"{type(e).__name__}, expected {case.expect.error.__name__}: {text}"
    if "\n" in text:
        return "BAD MESSAGE", f"several lines: {text[:300]}"
    unnamed = [w for w in case.expect.where if getattr(e, w, None) is None]
    if unnamed:
        return "BAD MESSAGE", f"the error does not name the {', '.join(unnamed)}: {text}"
    missing = _words_missing(text, case.expect.words)
    if missing:
        return "BAD MESSAGE", f"message lacks {missing}: {text}"
    return "refused", text


def _check_same(case, call, value) -> tuple:
    if case.expect.kind == "refused":
        return "SILENT", f"expected a refusal ({', '.join(case.expect.words)}), got a result"
    if call.check is None:
        return "correct", ""
    try:
        call.check(value)
    except AssertionError as e:
        return "SILENT", f"result differs from the clean case: {str(e).strip()[:400]}"
    return "correct", ""


def _execute(case, call) -> tuple:
    """(outcome, detail, failed) of running `call`."""
    from COMPASSLib.errors import CompassError

    if call.door == "reader":
        try:
            value = call.target()
        except CompassError as e:
            return (*_judge_reader_error(case, e), True)
        except Exception as e:  # noqa: BLE001 - a traceback is what the corpus looks for
            return "TRACEBACK", f"{type(e).__name__}: {e}\n{_short_tb(e)}", True
        return (*_check_same(case, call, value), False)
    rc, out, err, exc = _door(call)
    if exc is not None:
        return "TRACEBACK", f"{type(exc).__name__}: {exc}\n{_short_tb(exc)}", True
    if rc != 0:
        return (*_judge_error_line(case, call, rc, err), True)
    unexpected = re.search(r"unexpected (\w+(Error|Exception))", err)
    if unexpected:
        return "TRACEBACK", f"hidden traceback in the warnings: {err.strip()[:300]}", False
    return (*_check_same(case, call, (out, call.out)), False)


def _short_tb(e) -> str:
    frames = traceback.extract_tb(e.__traceback__)[-3:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))


def run_case(case: Case, ws: Workspace, shared_stats: Callable | None = None) -> Result:
    folder = ws.root / "cases" / case.name
    t0 = time.perf_counter()
    try:
        (folder / "in").mkdir(parents=True, exist_ok=True)
        call = case.build(ws, folder)
    except Exception as e:  # noqa: BLE001 - a corpus bug, reported as such
        return Result(case, "BUILD ERROR", f"{type(e).__name__}: {e}\n{traceback.format_exc()[-800:]}",
                      time.perf_counter() - t0)
    inputs = tree_hashes(folder / "in")
    before_out = snapshot(call.out) if call.out is not None else None
    before_shared = shared_stats() if shared_stats else None
    outcome, detail, failed = _execute(case, call)
    if outcome in OK:
        if tree_hashes(folder / "in") != inputs or (shared_stats and shared_stats() != before_shared):
            outcome, detail = "MODIFIED", "an input file changed"
        elif failed and call.out is not None and (snapshot(call.out) != before_out or _staging_left(call.out)):
            outcome, detail = "HALF-WRITTEN", f"{call.out} changed or a staging folder was left: {detail}"
    return Result(case, outcome, detail, time.perf_counter() - t0)


def run_corpus(cases, ws, progress=None) -> list:
    """Every case, in order (cases of one group share clean results). Logging stays with the caller's
    handlers: a root logger without handlers gets a NullHandler so that `compass`' basicConfig does not
    bind one to a captured stream."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    shared = [ws.cohort.root, ws.shared / "dicompyler_example", ws.shared / "ibsi" / "sts" / "STS_002"]

    def stats():
        return tree_stats(*shared)

    results = []
    for case in cases:
        results.append(run_case(case, ws, stats))
        if progress:
            progress(results[-1])
    return results


# --------------------------------------------------------------------------------------------- the table
def outcome_table(results) -> str:
    """Markdown table: cases per group, refused / correct, each kind of failure, seconds."""
    groups = {}
    for r in results:
        groups.setdefault(r.case.group, []).append(r)
    shown = ("TRACEBACK", "SILENT", "HALF-WRITTEN")      # always shown, zero or not
    kinds = [k for k in FAILURES if k in shown or any(r.outcome == k for r in results)]
    head = ["reader / command", "cases", "refused (CompassError)", "correct result", *kinds, "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(name, rs):
        counts = [sum(r.outcome == k for r in rs) for k in ("refused", "correct", *kinds)]
        return "| " + " | ".join([name, str(len(rs)), *map(str, counts), f"{sum(r.seconds for r in rs):.1f}"]) + " |"

    for name, rs in groups.items():
        lines.append(row(name, rs))
    lines.append(row("**all**", results))
    return "\n".join(lines)


def failure_lines(results) -> list:
    return [f"{r.case.group} / {r.case.name}: {r.outcome}: {r.detail}" for r in results if r.outcome not in OK]
