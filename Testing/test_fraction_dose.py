"""One fraction's dose is one fraction's physical dose: a plan (course) summation, a BED/EQD2 map or a
dose in cGy stored as Gy are refused where a fraction's dose is used (features, `compass bed`), not read
as a fraction (Resources/fraction_dose.yaml). `compass dvh` still reads a plan dose."""
from __future__ import annotations

import numpy as np
import pytest

from COMPASSLib.cli import main
from COMPASSLib.io.fraction_dose import check_fraction_dose
from COMPASSLib.errors import DoseError
from COMPASSLib.io.rtdose import read_rtdose
from helpers_dicom import write_rtdose

DOSE = np.full((3, 4, 5), 2.0)


@pytest.mark.parametrize("extra, words", [
    ({"DoseSummationType": "PLAN"}, "DoseSummationType PLAN"),
    ({"DoseSummationType": "MULTI_PLAN"}, "DoseSummationType MULTI_PLAN"),
    ({"DoseType": "EFFECTIVE"}, "DoseType EFFECTIVE"),
    ({"DoseType": "ERROR"}, "DoseType ERROR"),
])
def test_not_one_fractions_physical_dose_is_refused(tmp_path, extra, words):
    path = write_rtdose(tmp_path / "rd.dcm", DOSE, extra=extra)
    with pytest.raises(DoseError, match=words) as e:
        check_fraction_dose(read_rtdose(path), path, "P001", 3)
    assert e.value.patient == "P001" and e.value.fraction == 3 and str(path) in str(e.value)


def test_hottest_voxel_beyond_one_fraction_is_refused_brachy_allowed_more(tmp_path):
    hot = DOSE.copy()
    hot[1, 2, 2] = 200.0                     # 2 Gy stored in cGy units read as Gy: 200
    path = write_rtdose(tmp_path / "rd.dcm", hot, scaling=1e-2)
    with pytest.raises(DoseError, match="hottest voxel is 200 Gy, above the 60 Gy"):
        check_fraction_dose(read_rtdose(path), path)
    brachy = write_rtdose(tmp_path / "hdr.dcm", hot, scaling=1e-2, extra={"DoseSummationType": "BRACHY"})
    check_fraction_dose(read_rtdose(brachy), brachy)         # next to an HDR source 200 Gy is plausible
    check_fraction_dose(read_rtdose(write_rtdose(tmp_path / "ok.dcm", DOSE)))
    check_fraction_dose(DOSE)                                 # a plain array says nothing: only the value check


def test_compass_bed_refuses_a_plan_dose_but_dvh_reads_it(tmp_path, shared_data, capsys):
    plan = shared_data / "dicompyler_example" / "rtdose.dcm"     # DoseSummationType PLAN: 14 Gy in 7 fractions
    assert main(["bed", "--alpha-beta", "3", str(plan), "-o", str(tmp_path / "bed.nrrd")]) == 2
    err = capsys.readouterr().err
    assert "DoseSummationType PLAN" in err and "rtdose.dcm" in err and "Traceback" not in err
    assert not (tmp_path / "bed.nrrd").exists()
    assert main(["dvh", "--dose", str(plan), "--structures", str(shared_data / "dicompyler_example" / "rtss.dcm"),
                 "--roi", "Heart"]) == 0
