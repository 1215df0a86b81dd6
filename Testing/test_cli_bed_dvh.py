"""`compass bed` and `compass dvh` through COMPASSLib.cli.main, on files written in the test and on the
dicompyler-core example plan."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from COMPASSLib.cli import main


def _write_constant(path, value, size=(6, 5, 4), spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0)):
    img = sitk.Image(size, sitk.sitkFloat32) + float(value)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


def test_bed_nrrd_with_resampling_and_eqd2(tmp_path):
    f1 = _write_constant(tmp_path / "fx1.nrrd", 2.0)
    # fraction 2 on another, larger grid that covers the first: resampled linearly onto fraction 1's grid
    f2 = _write_constant(tmp_path / "fx2.nii.gz", 3.0, size=(9, 9, 9), spacing=(1.5, 1.5, 2.0),
                         origin=(-1.0, -1.0, -1.0))
    before = (f1.read_bytes(), f2.read_bytes())
    out = tmp_path / "out" / "bed.nrrd"
    assert main(["bed", "--alpha-beta", "3", str(f1), str(f2), "-o", str(out)]) == 0
    bed = sitk.ReadImage(str(out))
    assert bed.GetSize() == (6, 5, 4) and bed.GetSpacing() == (2.0, 2.0, 3.0)
    expected = 2 * (1 + 2 / 3) + 3 * (1 + 3 / 3)
    np.testing.assert_allclose(sitk.GetArrayFromImage(bed), expected, rtol=1e-6)
    assert bed.GetMetaData("COMPASS_quantity") == "BED" and bed.GetMetaData("COMPASS_alpha_beta_gy") == "3"
    prov = json.loads((tmp_path / "out" / "bed.nrrd.provenance.json").read_text())
    assert prov["settings"]["alpha_beta_gy"] == 3.0 and prov["settings"]["quantity"] == "BED"
    assert set(prov["inputs"]) == {str(f1), str(f2)} and prov["versions"]["SimpleITK"]
    assert (f1.read_bytes(), f2.read_bytes()) == before  # inputs untouched

    out2 = tmp_path / "eqd2.nrrd"
    assert main(["bed", "--alpha-beta", "3", "--eqd2", str(f1), str(f2), "-o", str(out2)]) == 0
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(out2))), expected / (1 + 2 / 3), rtol=1e-6)


def test_bed_rtdose_in_and_out_references_the_plan(shared_data, tmp_path):
    from COMPASSLib.io.rtdose import read_rtdose
    from COMPASSLib.io.rtdose_writer import write_rtdose

    src = shared_data / "dicompyler_example" / "rtdose.dcm"
    plan = read_rtdose(src)
    fraction = sitk.Cast(plan / 7.0, sitk.sitkFloat32)  # 14 Gy in 7 fractions: one fraction's dose
    fx = [write_rtdose(fraction, tmp_path / f"fx{k}.dcm", template=src, summation_type="FRACTION") for k in (1, 2)]
    out = tmp_path / "bed.dcm"
    assert main(["bed", "--alpha-beta", "10", str(fx[0]), str(fx[1]), "-o", str(out)]) == 0
    ds = pydicom.dcmread(out)
    template = pydicom.dcmread(src, stop_before_pixels=True)
    assert ds.DoseType == "EFFECTIVE" and "BED" in ds.SeriesDescription and "10 Gy" in ds.SeriesDescription
    assert ds.FrameOfReferenceUID == template.FrameOfReferenceUID
    assert ds.StudyInstanceUID == template.StudyInstanceUID and ds.PatientID == template.PatientID
    assert (ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
            == template.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID)
    d = read_rtdose(fx[0])
    dv = sitk.GetArrayFromImage(d).astype(np.float64)
    back = sitk.GetArrayFromImage(read_rtdose(out)).astype(np.float64)
    np.testing.assert_allclose(back, 2 * dv * (1 + dv / 10), rtol=1e-5, atol=1e-6)
    assert (tmp_path / "bed.dcm.provenance.json").is_file()


def test_bed_errors_are_one_line_exit_2(tmp_path, capsys):
    f1 = _write_constant(tmp_path / "fx1.nrrd", 2.0)
    assert main(["bed", "--alpha-beta", "0", str(f1), "-o", str(tmp_path / "o.nrrd")]) == 2
    assert "alpha/beta must be a finite number > 0" in capsys.readouterr().err
    assert main(["bed", "--alpha-beta", "3", str(tmp_path / "nope.nrrd"), "-o", str(tmp_path / "o.nrrd")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "nope.nrrd" in err and "fraction 1" in err
    neg = _write_constant(tmp_path / "neg.nrrd", -1.0)
    assert main(["bed", "--alpha-beta", "3", str(f1), str(neg), "-o", str(tmp_path / "o.nrrd")]) == 2
    err = capsys.readouterr().err
    assert "negative" in err and "fraction 2" in err
    assert not (tmp_path / "o.nrrd").exists()


def test_dvh_json_and_table_on_dicompyler_example(shared_data, capsys):
    folder = shared_data / "dicompyler_example"
    args = ["dvh", "--dose", str(folder / "rtdose.dcm"), "--structures", str(folder / "rtss.dcm")]
    # whole voxels: dicompyler-core's non-interpolated figures (the default's are test_dvh_supersampling.py's)
    assert main(args + ["--roi", "Heart", "--roi", "Tumor Bed", "--vx", "10", "--supersample", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in result["rois"]}
    assert set(rows) == {"Heart", "Tumor Bed"}
    heart = rows["Heart"]
    for key in ("name", "volume_cc", "min_gy", "max_gy", "mean_gy", "d2cc_gy", "d95_gy", "d0_1cc_gy", "v10gy_pct"):
        assert key in heart
    assert heart["volume_cc"] == pytest.approx(440.23124999, rel=0.01)      # dicompyler-core's test
    assert heart["mean_gy"] == pytest.approx(0.6475329, rel=0.01)
    assert heart["max_gy"] == pytest.approx(3.1, abs=0.05)
    assert heart["organ"] == "Heart" and heart["geud_n"] == 0.35
    assert rows["Tumor Bed"]["v10gy_pct"] == 100.0                          # a 14 Gy boost volume
    assert main(args + ["--roi", "Heart"]) == 0
    table = capsys.readouterr().out
    assert "Heart" in table and "D2cc Gy" in table and "Tumor Bed" not in table
    assert main(args + ["--roi", "Nonexistent"]) == 2
    assert "Nonexistent" in capsys.readouterr().err


def test_dvh_from_nrrd_dose_and_segmentation_file(shared_data, tmp_path, capsys):
    """The NRRD/.seg.nrrd path gives the same numbers as the RTDOSE/RTSTRUCT path on the same voxels."""
    from COMPASSLib import dose
    from COMPASSLib.io.rtdose import read_rtdose
    from COMPASSLib.io.rtstruct import read_rtstruct

    folder = shared_data / "dicompyler_example"
    dose_image = read_rtdose(folder / "rtdose.dcm")
    heart = read_rtstruct(folder / "rtss.dcm", dose_image, rois=["Heart"])["Heart"]
    sitk.WriteImage(dose_image, str(tmp_path / "dose.nrrd"))
    seg = sitk.Image(heart)
    for key, value in {"Segment0_ID": "Segment_1", "Segment0_Name": "Heart", "Segment0_LabelValue": "1",
                       "Segment0_Layer": "0"}.items():
        seg.SetMetaData(key, value)
    sitk.WriteImage(seg, str(tmp_path / "heart.seg.nrrd"))
    assert main(["dvh", "--dose", str(tmp_path / "dose.nrrd"), "--structures", str(tmp_path / "heart.seg.nrrd"),
                 "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rois"]
    expected = dose.dvh(dose_image, heart).metrics()
    assert row["name"] == "Heart"
    for key in ("volume_cc", "min_gy", "max_gy", "mean_gy", "d2cc_gy", "d95_gy"):
        assert row[key] == pytest.approx(expected[key], rel=1e-9)
