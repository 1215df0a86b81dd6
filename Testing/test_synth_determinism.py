"""Same seed -> byte-identical files; another seed -> other files; ground_truth.json is read by nothing;
the `compass synth` command and its errors."""
from __future__ import annotations

import hashlib
import json

import pytest

from COMPASSLib.cli import main
from COMPASSLib.synth import generate_cohort


def file_hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    """One small patient with 2 fractions, generated twice with seed 5 and once with seed 6."""
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = tmp_path_factory.mktemp(f"seed{seed}{name}")
        generate_cohort(out, patients=1, fractions=2, seed=seed, size="small")
        runs[name] = out
    return runs


def test_same_seed_gives_byte_identical_files(twin_runs):
    a, b = file_hashes(twin_runs["a"]), file_hashes(twin_runs["b"])
    assert len(a) > 50 and {"cohort.json", "outcomes.csv", "ground_truth.json"} <= set(a)
    assert a == b


def test_other_seed_gives_other_files(twin_runs):
    a, c = file_hashes(twin_runs["a"]), file_hashes(twin_runs["c"])
    assert set(a) == set(c)               # same layout ...
    differ = [k for k in a if a[k] != c[k]]
    # ... but every DICOM file differs (UIDs, dates, anatomy).
    assert all(k in differ for k in a if k.endswith(".dcm"))
    ga = json.loads((twin_runs["a"] / "ground_truth.json").read_text())
    gc = json.loads((twin_runs["c"] / "ground_truth.json").read_text())
    assert ga["patients"][0]["anatomy"] != gc["patients"][0]["anatomy"]


def test_pipeline_inputs_do_not_need_ground_truth(twin_runs, tmp_path):
    """Delete ground_truth.json: the manifest, outcomes, a scan of the files and the ingested images of
    every fraction are the same as with it."""
    import shutil

    import numpy as np
    import SimpleITK as sitk

    from COMPASSLib.cohort import Cohort
    from COMPASSLib.ingest import load_fraction
    from COMPASSLib.scan import scan

    def pipeline_view(root):
        cohort = Cohort.load(root)
        view = {"manifest": cohort.to_dict(), "scan": scan(root).to_dict(),
                "outcomes": [vars(o) for o in cohort.outcomes()]}
        for p in cohort.patients:
            for f in p.fractions:
                fi = load_fraction(cohort, p.id, f.index)
                arrays = [fi.ct, fi.pet, fi.dose, *[fi.masks[k] for k in sorted(fi.masks)]]
                view[f"{p.id}/{f.index}"] = [hashlib.sha256(np.ascontiguousarray(
                    sitk.GetArrayFromImage(a)).tobytes()).hexdigest() for a in arrays]
        return view

    copy = tmp_path / "cohort"
    shutil.copytree(twin_runs["a"], copy)
    before = pipeline_view(copy)
    (copy / "ground_truth.json").unlink()
    after = pipeline_view(copy)
    assert before == after
    assert file_hashes(copy).items() <= file_hashes(twin_runs["a"]).items()


def test_cli_synth_writes_a_cohort(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", str(out), "--patients", "1", "--fractions", "1", "--seed", "3", "--size", "small"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "cohort.json")
    assert (out / "outcomes.csv").read_text().splitlines()[0] == "patient,organ,grade,onset_fraction"
    assert (out / "SYN001" / "F1" / "RD.dcm").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--patients", "0"], "at least 1 patient"),
    (["--fractions", "0"], "at least 1 patient and 1 fraction"),
    (["--seed", "-1"], "seed must be >= 0"),
])
def test_cli_synth_rejects_bad_settings(tmp_path, capsys, argv, message):
    assert main(["synth", str(tmp_path / "x"), "--size", "small", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unknown_size_is_a_clear_error(tmp_path):
    from COMPASSLib.errors import InputError

    with pytest.raises(InputError, match="unknown synthetic cohort size 'huge'"):
        generate_cohort(tmp_path, patients=1, fractions=1, size="huge")
