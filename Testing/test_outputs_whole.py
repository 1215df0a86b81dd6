"""Outputs that are whole or absent (issue 15).

1. Every command checks its output path before any work starts: a path under a regular file, an existing
   file where a folder is wanted (or a folder where a file is wanted), a folder that cannot be written
   (for real: under /proc; and with `os.access` saying no, since root may write a chmod 0o555 folder)
   give one `compass X: error:` line naming the path, exit status 2, no traceback. The work itself is
   replaced by a function that fails the test if it is reached.
2. `compass run` writes into a staging folder beside OUT (`atomic.staged_dir`): a run refused up front
   (too few patients with outcomes, a patient without dose) leaves OUT absent; a run that fails or is
   cancelled in the middle leaves OUT as it was, but for the feature cache (entries whole, reused).
   `compass features -o table.csv` (table + sidecar) and `compass texture -o DIR` write all or nothing.
3. `compass scan` of a patient without RTDOSE warns on stderr, naming the patient and its sessions;
   `--strict` writes no manifest.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib.cli import main
from COMPASSLib.cohort import Cohort
from COMPASSLib.errors import InputError, ModelError
from COMPASSLib.pipeline import write_subset

REPO = Path(__file__).resolve().parents[1]
FAST = ["--profile", "fast", "--epochs", "5", "--bootstrap", "20"]

# the work each command would start with; reaching one of them means the output was not checked first
WORK = ("COMPASSLib.io.read_volume", "COMPASSLib.features.table.extract_cohort",
        "COMPASSLib.features.texture_maps.texture_maps", "COMPASSLib.synth.generate_cohort",
        "COMPASSLib.scan.scan", "COMPASSLib.pipeline.load_patients", "COMPASSLib.report.write_report")


@pytest.fixture
def no_work(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    for target in WORK:
        monkeypatch.setattr(target, started)


@pytest.fixture(scope="module")
def two_fractions(small_cohort, tmp_path_factory):
    """The small cohort's first two fractions (a manifest with absolute paths; the fixture is untouched)."""
    return write_subset(small_cohort, tmp_path_factory.mktemp("whole") / "cohort", fractions=2)


@pytest.fixture
def inputs(small_cohort, tmp_path):
    """Valid inputs for every command, so that only the output path is wrong."""
    c = Cohort.load(small_cohort)
    image = sitk.GetImageFromArray(np.arange(216, dtype=np.float32).reshape(6, 6, 6) / 10)
    mask = sitk.GetImageFromArray(np.ones((6, 6, 6), np.uint8))
    folder = tmp_path / "in"
    (folder / "dicom").mkdir(parents=True)
    sitk.WriteImage(image, str(folder / "bed.nrrd"))
    sitk.WriteImage(mask, str(folder / "heart.nrrd"))
    return {"dose": str(c.path(c.patients[0].fractions[0].dose[0])), "manifest": str(small_cohort),
            "image": str(folder / "bed.nrrd"), "mask": str(folder / "heart.nrrd"),
            "scan_dir": str(folder / "dicom"), "model": str(folder / "trained" / "model")}


def _commands(i, folder, file):
    """Every command that writes, with `folder(name)` / `file(name)` as its output folder / file."""
    return [
        ["bed", "--alpha-beta", "3", i["dose"], "-o", file("bed.nrrd")],
        ["features", i["manifest"], "-o", file("table.csv"), "--profile", "fast", "--no-progress"],
        ["texture", "--image", i["image"], "--mask", i["mask"], "--bin-width", "2", "-o", folder("maps")],
        ["run", i["manifest"], "-o", folder("out"), *FAST],
        ["synth", folder("synthetic"), "--patients", "1", "--size", "small"],
        ["scan", i["scan_dir"], "-o", file("cohort.json")],
        ["update", i["model"], i["scan_dir"], "--cache", folder("cache")],
        ["report", folder("results")],
        ["demo", folder("demo"), "--patients", "3"],
    ]


def _refused(capsys, argv, *needles):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2, (argv, rc, err)
    assert len(errors) == 1 and errors[0].startswith(f"compass {argv[0]}: error:"), (argv, err)
    assert "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in errors[0], (argv, needle, errors[0])
    return errors[0]


def test_an_output_under_a_regular_file_is_one_error_line_before_any_work(inputs, tmp_path, capsys, no_work,
                                                                         two_fractions):
    from COMPASSLib.background import Job

    blocker = tmp_path / "somefile.txt"
    blocker.write_text("not a folder\n")
    for argv in _commands(inputs, lambda n: blocker / n, lambda n: blocker / n):
        line = _refused(capsys, argv, blocker, "is a file, not a folder")
        assert "cannot write" in line
    assert blocker.read_text() == "not a folder\n"
    with pytest.raises(InputError, match="somefile.txt is a file, not a folder"):
        Job("run", two_fractions, blocker / "out")   # the Slicer module's background job: refused at once


def test_an_existing_file_where_a_folder_is_wanted_and_the_reverse(inputs, tmp_path, capsys, no_work):
    a_file = tmp_path / "existing.txt"
    a_file.write_text("mine\n")
    folder_wanted = [argv for argv in _commands(inputs, lambda n: a_file, lambda n: None)
                     if argv[0] in ("texture", "run", "synth", "update", "report", "demo")]
    folder_wanted.append(["features", inputs["manifest"], "-o", tmp_path / "t.csv", "--cache", a_file])
    for argv in folder_wanted:
        _refused(capsys, argv, a_file, "is an existing file, not a folder")
    assert a_file.read_text() == "mine\n"

    for name in ("bed.nrrd", "table.csv", "bed2.nrrd.provenance.json", "table2.csv.json"):
        (tmp_path / name).mkdir()
    file_wanted = [argv for argv in _commands(inputs, lambda n: None, lambda n: tmp_path / n)
                   if argv[0] in ("bed", "features")]
    for argv in file_wanted:
        _refused(capsys, argv, tmp_path / argv[argv.index("-o") + 1].name, "is an existing folder, not a file")
    _refused(capsys, ["bed", "--alpha-beta", "3", inputs["dose"], "-o", tmp_path / "bed2.nrrd"],
             "bed2.nrrd.provenance.json", "is an existing folder, not a file")
    _refused(capsys, ["features", inputs["manifest"], "-o", tmp_path / "table2.csv", "--no-progress"],
             "table2.csv.json", "is an existing folder, not a file")


def test_a_folder_that_cannot_be_written_is_refused(inputs, tmp_path, capsys, no_work, monkeypatch):
    # as root a chmod 0o555 folder is still writable; /proc truly is not (Linux), and os.access is what the
    # check asks first, so a folder it says no to (as it would for a normal user) is refused the same way
    if Path("/proc/self").is_dir():
        proc = Path("/proc/compass-cannot-write")
        for argv in _commands(inputs, lambda n: proc / n, lambda n: proc / n):
            _refused(capsys, argv, proc, "not writable")

    read_only = tmp_path / "read_only"
    (read_only / "results").mkdir(parents=True)
    (read_only / "cache").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) in (read_only, read_only / "results",
                                                                                    read_only / "cache")
                        else real_access(p, mode, **kw))
    for argv in _commands(inputs, lambda n: read_only / n, lambda n: read_only / n):
        _refused(capsys, argv, read_only, "not writable (permission denied)")
    assert sorted(p.name for p in read_only.iterdir()) == ["cache", "results"]


# --- 2. compass run: a failed run leaves OUT as it was ------------------------------------------------------
def _variant(manifest, out_dir, edit) -> Path:
    """A copy of `manifest` (absolute paths) changed by edit(dict, folder) and saved in out_dir."""
    d = json.loads(Path(manifest).read_text())
    out_dir.mkdir(parents=True)
    edit(d, out_dir)
    (out_dir / "cohort.json").write_text(json.dumps(d))
    return out_dir / "cohort.json"


def _no_staging_left(folder):
    return not [p for p in folder.iterdir() if ".partial-" in p.name]


def test_too_few_patients_with_outcomes_is_refused_before_any_work(two_fractions, tmp_path, capsys, no_work):
    first = Cohort.load(two_fractions).patient_ids[0]

    def one_patient_outcomes(d, folder):
        lines = Path(d["outcomes"]).read_text().splitlines(keepends=True)
        (folder / "outcomes.csv").write_text("".join(lines[:1] + [x for x in lines[1:] if x.startswith(first + ",")]))
        d["outcomes"] = str(folder / "outcomes.csv")

    manifest = _variant(two_fractions, tmp_path / "few", one_patient_outcomes)
    out = tmp_path / "out"
    line = _refused(capsys, ["run", manifest, "-o", out, *FAST], "at least 3 patients with outcomes", "outcomes.csv")
    assert f"usable: {first}" in line and "no outcome rows" in line
    assert not out.exists() and _no_staging_left(tmp_path)


def test_a_patient_without_dose_that_leaves_too_few_is_refused_before_any_work(two_fractions, tmp_path, capsys,
                                                                               no_work):
    def drop_dose(d, folder):
        for f in d["patients"][2]["fractions"]:
            f["dose"] = []

    manifest = _variant(two_fractions, tmp_path / "nodose", drop_dose)
    last = Cohort.load(manifest).patient_ids[2]
    out = tmp_path / "out"
    line = _refused(capsys, ["run", manifest, "-o", out, *FAST], "at least 3 patients")
    assert f"without a dose file: {last} (fraction 1, 2)" in line
    assert not out.exists() and _no_staging_left(tmp_path)


def _snapshot(folder, skip=("cache",)):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).parts[0] not in skip}


def test_a_run_that_fails_or_is_cancelled_midway_leaves_out_as_it_was(two_fractions, tmp_path, capsys,
                                                                      monkeypatch):
    from COMPASSLib import pipeline
    from COMPASSLib.progress import Cancelled

    out = tmp_path / "out"           # an earlier run's outputs and a file of the user's
    (out / "model").mkdir(parents=True)
    for name, text in {"metrics.json": '{"earlier": true}\n', "risk.csv": "earlier\n", "features.csv": "earlier\n",
                       "model/model.json": "{}\n", "notes.txt": "mine\n"}.items():
        (out / name).write_text(text)
    before = _snapshot(out)

    def evaluation_fails(*args, **kwargs):
        raise ModelError("injected failure in the evaluation")

    monkeypatch.setattr("COMPASSLib.twin.evaluate.cross_validate", evaluation_fails)
    _refused(capsys, ["run", two_fractions, "-o", out, *FAST], "injected failure")
    assert _snapshot(out) == before, "a failed run changed OUT"
    entries = sorted(p.relative_to(out / "cache") for p in (out / "cache").rglob("*") if p.is_file())
    assert entries and all(p.suffix in (".json", ".npz") for p in entries)     # no temporary files
    assert {p.with_suffix("") for p in entries if p.suffix == ".json"} == \
        {p.with_suffix("") for p in entries if p.suffix == ".npz"}               # every entry whole
    assert _no_staging_left(tmp_path)
    monkeypatch.undo()

    # cancelled when the evaluation starts (features.csv was written by then), OUT absent before: absent after
    fresh = tmp_path / "fresh"
    with pytest.raises(Cancelled):
        pipeline.run(two_fractions, fresh, {"profile": "fast", "n_bootstrap": 20, "twin": {"epochs": 5},
                                            "cache_dir": str(out / "cache")},
                     progress=lambda f, m: not m.startswith("cross-validation"))
    assert not fresh.exists() and _no_staging_left(tmp_path)


def test_features_table_and_sidecar_are_written_whole_or_not_at_all(small_cohort, tmp_path, capsys, monkeypatch):
    first = Cohort.load(small_cohort).patient_ids[0]
    manifest = write_subset(small_cohort, tmp_path / "one", fractions=1, patients=[first])
    table, sidecar = tmp_path / "table.csv", tmp_path / "table.csv.json"

    def sidecar_fails(*args, **kwargs):
        raise InputError("injected failure while writing the sidecar")

    monkeypatch.setattr("COMPASSLib.provenance.record", sidecar_fails)
    _refused(capsys, ["features", manifest, "-o", table, "--profile", "fast", "--no-progress"], "injected")
    assert not table.exists() and not sidecar.exists()
    table.write_text("earlier\n")
    sidecar.write_text("{}\n")
    _refused(capsys, ["features", manifest, "-o", table, "--profile", "fast", "--no-progress"], "injected")
    assert table.read_text() == "earlier\n" and sidecar.read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "table.csv", "table.csv.json"]   # no temporaries


def test_texture_maps_are_written_all_or_none(inputs, tmp_path, capsys, monkeypatch):
    real_write = sitk.WriteImage
    calls = []

    def disk_full_on_the_second_map(image, path, *args):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return real_write(image, path, *args)

    monkeypatch.setattr(sitk, "WriteImage", disk_full_on_the_second_map)
    argv = ["texture", "--image", inputs["image"], "--mask", inputs["mask"], "--bin-width", "2",
            "--features", "firstorder:Entropy,firstorder:Mean"]
    maps = tmp_path / "maps"
    _refused(capsys, argv + ["-o", maps], "No space left on device")
    assert not maps.exists() and _no_staging_left(tmp_path)
    maps.mkdir()
    (maps / "firstorder_Entropy.nrrd").write_bytes(b"earlier")
    calls.clear()
    _refused(capsys, argv + ["-o", maps], "No space left on device")
    assert sorted(p.name for p in maps.iterdir()) == ["firstorder_Entropy.nrrd"]
    assert (maps / "firstorder_Entropy.nrrd").read_bytes() == b"earlier" and _no_staging_left(tmp_path)
    monkeypatch.undo()
    assert main([str(a) for a in argv + ["-o", maps]]) == 0
    assert sorted(p.name for p in maps.iterdir()) == ["firstorder_Entropy.nrrd", "firstorder_Mean.nrrd",
                                                      "texture_maps.json"]
    assert (maps / "firstorder_Entropy.nrrd").read_bytes() != b"earlier" and _no_staging_left(tmp_path)


def test_staged_dir_promotes_entry_by_entry_and_cleans_up(tmp_path):
    from COMPASSLib.atomic import staged_dir, staging_path

    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "old.json").write_text("old")
    (out / "risk.csv").write_text("old")
    (out / "keep.txt").write_text("mine")
    with staged_dir(out) as stage:
        assert stage.parent == tmp_path and stage.name.startswith(f".out.partial-{os.getpid()}-")
        (stage / "model").mkdir()
        (stage / "model" / "new.json").write_text("new")
        (stage / "risk.csv").write_text("new")
        assert (out / "risk.csv").read_text() == "old"       # nothing moves before the end
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["keep.txt", "model/new.json", "risk.csv"]            # model/ replaced as a whole, keep.txt kept
    assert (out / "risk.csv").read_text() == "new" and _no_staging_left(tmp_path)

    with pytest.raises(RuntimeError):
        with staged_dir(tmp_path / "a" / "b" / "absent") as stage:
            (stage / "risk.csv").write_text("half")
            raise RuntimeError("failed")
    assert not (tmp_path / "a").exists()                      # folders made above OUT are gone again

    # a staging folder of a process that is gone (SIGKILLed) goes; one of a live process stays
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".out.partial-{int(gone.stdout)}-0123abcd"
    live = staging_path(out)
    for folder in (dead, live):
        (folder / "model").mkdir(parents=True)
    with staged_dir(out):
        pass
    assert not dead.exists() and live.is_dir()
    shutil.rmtree(live)


def test_an_existing_out_in_a_folder_that_cannot_be_written_is_staged_inside_it(tmp_path, monkeypatch):
    from COMPASSLib.atomic import check_output, staged_dir, staging_path

    locked = tmp_path / "project"        # e.g. a project area where only the results folder is the user's
    out = locked / "results"
    out.mkdir(parents=True)
    (out / "risk.csv").write_text("old")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real_access(p, mode, **kw))
    with pytest.raises(InputError, match="not writable"):
        check_output(locked / "new", staged=True)       # a new OUT there cannot be made at all
    check_output(out, staged=True)                      # an existing one can be written into
    assert staging_path(out).parent == out
    with staged_dir(out) as stage:
        assert stage.parent == out
        (stage / "risk.csv").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["risk.csv"] and (out / "risk.csv").read_text() == "new"


# --- 3. compass scan of a patient without RTDOSE -------------------------------------------------------------
def test_scan_warns_per_patient_without_dose_and_strict_writes_nothing(small_cohort, tmp_path):
    c = Cohort.load(small_cohort)
    with_dose, without = c.patient_ids[:2]
    tree = tmp_path / "dicom"
    for pid in (with_dose, without):
        shutil.copytree(small_cohort.parent / pid, tree / pid)
    for rd in (tree / without).rglob("RD*.dcm"):
        rd.unlink()
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def scan(*extra):
        return subprocess.run([sys.executable, "-m", "COMPASSLib", "scan", str(tree), *extra], capture_output=True,
                              text=True, env=env, timeout=120)

    done = scan("-o", str(tmp_path / "cohort.json"))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "no RTDOSE" in line]
    assert len(warnings) == 1 and f"patient {without}:" in warnings[0], done.stderr
    sessions = [f"fraction {f.index} ({f.datetime})" for f in Cohort.load(tmp_path / "cohort.json").patient(without).fractions]
    assert len(sessions) == 3 and all(s in warnings[0] for s in sessions), warnings[0]
    assert "compass features" in warnings[0] and "leave this patient out" in warnings[0]
    assert "1 patient(s) with fractions without dose" in done.stdout

    strict = scan("-o", str(tmp_path / "strict.json"), "--strict")
    assert strict.returncode == 2 and not (tmp_path / "strict.json").exists()
    errors = [line for line in strict.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"patient {without} fraction 1, 2, 3" in errors[0] and "Traceback" not in strict.stderr
