"""The DICOM tree the scan and ingest tests group and load (test helper only): two patients as a clinic
would export them, written with helpers_dicom's writers. See build_tree for what it holds."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom

from helpers_dicom import pet_info, square, write_rtdose, write_rtstruct, write_series

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
