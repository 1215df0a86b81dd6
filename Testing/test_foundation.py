"""The shared foundation: manifest round trip, outcomes CSV, resources lookup, errors, atomic writes, CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from COMPASSLib import atomic
from COMPASSLib.cli import main
from COMPASSLib.cohort import Cohort, Fraction, Outcome, Patient, read_outcomes, write_outcomes
from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.resources import alpha_beta, canonical_organ, organ_table, resources_dir


def test_manifest_round_trip_keeps_paths_relative(tmp_path):
    c = Cohort([Patient("P1", [Fraction(2, ct=["P1/F2/ct.nrrd"]), Fraction(1, ct=["P1/F1/ct.nrrd"])],
                        organs={"Spinal Cord": "SpinalCord"})], root=tmp_path)
    c.save(tmp_path / "cohort.json")
    back = Cohort.load(tmp_path)
    assert [f.index for f in back.patient("P1").fractions] == [1, 2]
    assert back.path("P1/F1/ct.nrrd") == tmp_path.resolve() / "P1/F1/ct.nrrd"
    assert json.loads((tmp_path / "cohort.json").read_text())["patients"][0]["fractions"][0]["ct"] == ["P1/F1/ct.nrrd"]


def test_manifest_errors_name_the_file(tmp_path):
    bad = tmp_path / "cohort.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON") as e:
        Cohort.load(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(InputError, match="not found"):
        Cohort.load(tmp_path / "missing.json")


def test_outcomes_csv(tmp_path):
    p = tmp_path / "outcomes.csv"
    write_outcomes(p, [Outcome("P1", "Heart", 2, 4), Outcome("P1", "Esophagus", 0, None)])
    rows = read_outcomes(p)
    assert rows[0].toxic and rows[0].onset_fraction == 4
    assert not rows[1].toxic and rows[1].onset_fraction is None
    p.write_text("patient,organ,grade\nP1,Heart,x\n")
    with pytest.raises(InputError, match="line 2") as e:
        read_outcomes(p)
    assert "P1" in str(e.value)


def test_resources_found_and_synonyms():
    assert (resources_dir() / "organs.yaml").is_file()
    assert canonical_organ("SPINAL_CORD") == "SpinalCord"
    assert canonical_organ("Oesophagus") == "Esophagus"
    assert canonical_organ("Lt Lung") == "Lung_L"
    assert canonical_organ("not an organ") is None
    assert alpha_beta("SpinalCord") == 2.0
    assert alpha_beta("Heart", {"Heart": 2.5}) == 2.5
    assert {"SpinalCord", "Heart", "Esophagus"} <= set(organ_table())


def test_error_names_file_patient_fraction():
    e = CompassError("RTDOSE has no DoseGridScaling", file="/x/RD.dcm", patient="P7", fraction=3)
    assert str(e) == "RTDOSE has no DoseGridScaling [patient P7, fraction 3, file /x/RD.dcm]"
    # the manifest's planning entry has index 0: named as what it is, not as a fraction nobody delivered
    e = CompassError("CT series has gaps", file="/x/CT", patient="P7", fraction=0)
    assert str(e) == "CT series has gaps [patient P7, planning scan, file /x/CT]"


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_cli_help_and_module_entry():
    assert main([]) == 1
    out = subprocess.run([sys.executable, "-m", "COMPASSLib", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "COMPASS" in out.stdout


def test_safe_filename_is_one_path_component():
    assert atomic.safe_filename("LUNG1-001") == "LUNG1-001"
    assert atomic.safe_filename("../P 01/é:x") == ".._P_01_é_x"
    assert [atomic.safe_filename(n) for n in ("", ".", "..")] == ["_", "_.", "_.."]
    assert "/" not in atomic.safe_filename("a/b\\c") and "\\" not in atomic.safe_filename("a/b\\c")


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os
    import stat

    p = atomic.write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
