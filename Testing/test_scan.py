"""`compass scan`: grouping a DICOM tree (written in the test, helpers_scan.build_tree) by patient and
fraction."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from COMPASSLib.cohort import Cohort
from helpers_scan import build_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_tree(tmp_path_factory.mktemp("scan"))


@pytest.fixture(scope="module")
def scanned(tree):
    from COMPASSLib.scan import scan

    return scan(tree, manifest_path=tree.parent / "cohort.json")


def test_patients_and_fractions(scanned):
    assert scanned.patient_ids == ["P001", "P002"]
    p1 = scanned.patient("P001")
    assert [f.index for f in p1.fractions] == [1, 2]
    assert [f.datetime for f in p1.fractions] == ["2026-01-05T09:00:00", "2026-01-06T09:00:00"]
    f1, f2 = p1.fractions
    assert len(f1.ct) == 6 and len(f1.pet) == 4 and f1.dose == ["export/P001/e/x2.dcm"]
    assert f1.rtstruct == ["export/P001/e/x3.dcm"]
    assert f2.ct == [] and f2.pet == [] and f2.dose == ["export/P001/f/x4.dcm"] and f2.rtstruct == []
    assert p1.weight_kg == 75.0 and p1.frame_of_reference_uid


def test_planning_ct_precedes_first_dose(scanned):
    plan = scanned.patient("P001").planning
    assert len(plan.ct) == 8 and all(p.startswith("export/P001/a/") for p in plan.ct)
    assert plan.rtstruct == ["export/P001/b/x1.dcm"]


def test_fraction_numbers_order_same_day_fractions(scanned):
    p2 = scanned.patient("P002")
    assert [(f.index, f.fraction_number, f.dose) for f in p2.fractions] == [
        (1, 1, ["export/P002/rd_b.dcm"]), (2, 2, ["export/P002/rd_a.dcm"])]
    assert [len(f.ct) for f in p2.fractions] == [5, 3]          # evening CT with fraction 1, morning with 2
    assert p2.planning is not None and len(p2.planning.ct) == 4


def test_roi_names_mapped_to_canonical_organs(scanned):
    assert scanned.patient("P001").organs == {"Heart": "Heart", "Spinal Cord": "SpinalCord", "Couch": None}


def test_cli_writes_manifest_with_relative_paths(tree, tmp_path):
    from COMPASSLib.cli import main

    out = tmp_path / "study" / "cohort.json"
    assert main(["scan", str(tree), "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["provenance"]["versions"]["pydicom"] and data["provenance"]["settings"]["directory"]
    paths = [p for pt in data["patients"] for f in pt["fractions"] for m in ("ct", "pet", "dose", "rtstruct")
             for p in f[m]]
    assert paths and not any(Path(p).is_absolute() for p in paths)
    cohort = Cohort.load(out)
    assert all(cohort.path(p).is_file() for p in paths)
    assert not (out.parent / "outcomes.csv").exists() and not (tree / "outcomes.csv").exists()


def test_scan_of_folder_without_dicom(tmp_path):
    from COMPASSLib.errors import InputError
    from COMPASSLib.scan import scan

    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no DICOM files"):
        scan(tmp_path)
