"""`compass scan`: grouping a DICOM tree (written in the test) by patient and fraction."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from COMPASSLib.cohort import Cohort
from test_io_writers import pet_info, square, write_rtdose, write_rtstruct, write_series

PLAN_DAY = dt.datetime(2026, 1, 2, 10, 0, 0)
FRACTION_DAYS = [dt.datetime(2026, 1, 5, 9, 0, 0), dt.datetime(2026, 1, 6, 9, 0, 0)]

# Planning CT grid: 16 x 16 x 8 voxels of 2 x 2 x 3 mm at the origin (covers 0..30 x 0..30 x 0..21 mm).
CT_SHAPE, CT_SPACING = (8, 16, 16), (2.0, 2.0, 3.0)
HEART_HALF = 5.5              # square of half-width 5.5 mm around (15, 15): centres 10..20 mm -> 6 x 6 voxels
HEART_PLANES = (6.0, 9.0, 12.0)


def _series_uid(files):
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


def _contours():
    return {"Heart": [square(15, 15, z, HEART_HALF) for z in HEART_PLANES],
            "Spinal Cord": [square(15, 25, z, 1.5) for z in (0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0, 21.0)],
            "Couch": [square(15, 29, 9.0, 1.0)]}


def build_tree(root: Path) -> Path:
    """Two patients as a clinic would export them (file names say nothing; only the headers do).

    P001: planning CT + RTSTRUCT (Jan 2); fraction days Jan 5 (CT, PET, RTDOSE, RTSTRUCT on the
    fraction CT) and Jan 6 (PET missing, RTDOSE only) -> 2 fractions, structures of fraction 2 from
    the plan. P002: two RTDOSE on one day (twice-daily) told apart only by FractionNumber, written in
    reverse order."""
    p1 = root / "export" / "P001"
    plan_ct = write_series(p1 / "a", np.full(CT_SHAPE, 40, np.int16), spacing=CT_SPACING, intercept=0.0,
                           when=PLAN_DAY)
    write_rtstruct(p1 / "b" / "x1.dcm", _contours(), referenced_series=_series_uid(plan_ct), when=PLAN_DAY)
    # fraction 1: CT on a shifted grid (same frame of reference), PET (BQML), RTDOSE, RTSTRUCT
    f1_ct = write_series(p1 / "c", np.full((6, 14, 14), 100, np.int16), spacing=(2.0, 2.0, 3.0),
                         origin=(1.0, 1.0, 3.0), when=FRACTION_DAYS[0])
    write_series(p1 / "d", np.full((4, 8, 8), 2500, np.int16), modality="PT", spacing=(4.0, 4.0, 6.0),
                 slope=2.0, when=FRACTION_DAYS[0], extra=lambda ds, z: pet_info(ds, injection="080000"))
    write_rtdose(p1 / "e" / "x2.dcm", np.full((6, 11, 11), 2.0), origin=(0.0, 0.0, 0.0),
                 spacing=(3.0, 3.0, 4.0), when=FRACTION_DAYS[0])
    write_rtstruct(p1 / "e" / "x3.dcm", {"Heart": [square(16, 15, z, HEART_HALF) for z in HEART_PLANES]},
                   referenced_series=_series_uid(f1_ct), when=FRACTION_DAYS[0])
    # fraction 2: dose only (1.8 Gy) -> PET None, planning CT and structures
    write_rtdose(p1 / "f" / "x4.dcm", np.full((6, 11, 11), 1.8), spacing=(3.0, 3.0, 4.0), when=FRACTION_DAYS[1])
    (p1 / "f" / "README.txt").write_text("not DICOM\n")

    p2 = root / "export" / "P002"
    write_series(p2 / "ct", np.zeros((4, 8, 8), np.int16), patient="P002", when=PLAN_DAY)
    morning, evening = dt.datetime(2026, 2, 3, 8, 0), dt.datetime(2026, 2, 3, 16, 0)
    write_rtdose(p2 / "rd_b.dcm", np.ones((2, 3, 3)), patient="P002", when=evening, extra={"FractionNumber": 1})
    write_rtdose(p2 / "rd_a.dcm", np.ones((2, 3, 3)), patient="P002", when=morning, extra={"FractionNumber": 2})
    # a CT before each session, without fraction number: joins the session nearest in time that day
    write_series(p2 / "cbct_am", np.zeros((3, 8, 8), np.int16), patient="P002", when=morning - dt.timedelta(minutes=10))
    write_series(p2 / "cbct_pm", np.zeros((5, 8, 8), np.int16), patient="P002", when=evening - dt.timedelta(minutes=10))
    return root / "export"


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
