"""COMPASS's DVHs against the planning system's own (`compass dvh --compare-tps`, io.planning_dvh,
dvh_agreement): the reader of an RTDOSE's DVHSequence, the DVH gamma checked against a brute-force
search, and the dicompyler example plan (../shared/data/dicompyler_example, Varian Eclipse), ROI by ROI.

The figure of issue 15 ("every ROI within 1 %") read two ways, measured with the default sampling (the
interpolated solid at the auto factor; test_dvh_supersampling.py has how each ROI got there):
    ROI              largest volume difference   DVH gamma, 1 % of 14 Gy / 1 volume-%
    Borders          1.66 pp                     0.03
    Scar             1.41                        0.87
    Nodes            2.30                        0.02
    Tumor Bed        0.34                        0.02
    Tumor Bed Block  0.76                        0.18
    Heart            0.26                        0.06
    Breast           0.22                        0.15
    Lt Lung          0.09                        0.04
    BODY             5.55                        0.94
Volume alone, three sub-cc ROIs stay above 1 point: their curves are ill-conditioned (a 0.1 mm shift of the
dose grid moves Scar's by 1.6-3 points; Borders' and Nodes' whole DVHs span 8 planning-system bins of
0.01 Gy, so a quarter bin moves them by 3 points). Within 1 % of the prescribed dose and 1 volume-% point,
every planning-system point of every ROI is met (gamma <= 1). BODY (the CT's outline, cut differently by
the planning system: 13,940 cc against COMPASS's 14,770 on the dose grid) is met too, but only because the
dose criterion covers its low-dose tail.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest

from COMPASSLib import dose
from COMPASSLib.cli import main
from COMPASSLib.dvh_agreement import dvh_gamma, volume_differences
from COMPASSLib.errors import InputError
from COMPASSLib.io.planning_dvh import PlanningDVH, read_planning_dvhs

# ROI -> (largest volume difference pp, gamma at 1 % of 14 Gy / 1 volume-%), as in the module docstring.
MEASURED = {"Borders": (1.66, 0.03), "Scar": (1.41, 0.87), "Nodes": (2.30, 0.02), "Tumor Bed": (0.34, 0.02),
            "Tumor Bed Block": (0.76, 0.18), "Heart": (0.26, 0.06), "Breast": (0.22, 0.15),
            "Lt Lung": (0.09, 0.04), "BODY": (5.55, 0.61)}


@pytest.fixture(scope="module")
def example(shared_data):
    return shared_data / "dicompyler_example"


# --------------------------------------------------------------------------- reading the DVHSequence

def test_reader_holds_the_planning_systems_curves_and_their_mean(example):
    """Nine DVHs, ROI numbers as in the RTSTRUCT. Taken at lower edge + half a bin, each curve's mean is the
    planning system's own DVHMeanDose (Eclipse writes it in % of the 14 Gy prescription): the bin convention
    the reader uses, checked on every ROI but BODY (its planning-system mean, 0.462 Gy, is not its curve's,
    0.488: the curve is not all of what the planning system averaged over)."""
    curves, skipped = read_planning_dvhs(example / "rtdose.dcm")
    assert skipped == {} and sorted(curves) == [1, 3, 4, 5, 6, 7, 8, 9, 10]
    ds = pydicom.dcmread(example / "rtdose.dcm", stop_before_pixels=True)
    for item in ds.DVHSequence:
        c = curves[int(item.DVHReferencedROISequence[0].ReferencedROINumber)]
        assert c.dvh_type == "CUMULATIVE" and c.volume_pct[0] == pytest.approx(100.0)
        assert (np.diff(c.volume_pct) <= 1e-9).all() and c.volume_pct.min() >= 0
        # mean dose: the volume between two points, V_i - V_i+1, received the dose halfway between them
        step = np.r_[-np.diff(c.volume_pct), c.volume_pct[-1]] / 100
        mean = (step * (c.dose_gy + 0.005)).sum()
        if c.roi_number != 1:
            assert mean == pytest.approx(float(item.DVHMeanDose) * 14 / 100, abs=2e-4), c.roi_number
            assert (step * c.dose_gy).sum() != pytest.approx(mean, abs=2e-3)   # at the lower edges: not
    assert curves[3].volume_cc == pytest.approx(0.74463057) and len(curves[3].dose_gy) == 16
    assert curves[3].dose_gy[:2] == pytest.approx([0.005, 0.015])


def _rtdose_with(example, tmp_path, edit):
    ds = pydicom.dcmread(example / "rtdose.dcm")
    edit(ds)
    path = tmp_path / "rtdose.dcm"
    ds.save_as(path)
    return path


def test_reader_reports_items_it_does_not_compare_and_refuses_broken_ones(example, tmp_path):
    def relative(ds):
        ds.DVHSequence[0].DoseUnits = "RELATIVE"
        ds.DVHSequence[1].DVHType = "NATURAL"
        ds.DVHSequence[2].DVHVolumeUnits = "PER_U"
        del ds.DVHSequence[3].DVHReferencedROISequence

    curves, skipped = read_planning_dvhs(_rtdose_with(example, tmp_path, relative))
    assert skipped == {1: "DoseUnits RELATIVE (reads GY and CGY)",
                       3: "DVHType NATURAL (reads CUMULATIVE and DIFFERENTIAL)",
                       4: "DVHVolumeUnits PER_U (reads CM3 and PERCENT)",
                       "item 4": "no DVHReferencedROISequence (which ROI it is is not said)"}
    assert sorted(curves) == [6, 7, 8, 9, 10]

    def odd(ds):
        ds.DVHSequence[1].DVHData = list(ds.DVHSequence[1].DVHData)[:-1]

    with pytest.raises(InputError, match="DVHData of ROI 3 holds 31 values") as e:
        read_planning_dvhs(_rtdose_with(example, tmp_path, odd))
    assert e.value.file.endswith("rtdose.dcm")

    def negative(ds):
        data = list(ds.DVHSequence[1].DVHData)
        data[3] = -0.2
        ds.DVHSequence[1].DVHData = data

    with pytest.raises(InputError, match="negative bin widths or volumes"):
        read_planning_dvhs(_rtdose_with(example, tmp_path, negative))


def test_a_differential_dvh_is_read_as_its_cumulative_curve(example, tmp_path):
    """The same DVH written as differential volumes gives the same curve, held at the lower bin edges."""
    def differential(ds):
        item = ds.DVHSequence[1]
        data = np.array([float(v) for v in item.DVHData]).reshape(-1, 2)
        data[:, 1] = data[:, 1] - np.r_[data[1:, 1], 0.0]
        item.DVHType, item.DVHData = "DIFFERENTIAL", [float(v) for v in data.ravel()]

    cumulative = read_planning_dvhs(example / "rtdose.dcm")[0][3]
    diff = read_planning_dvhs(_rtdose_with(example, tmp_path, differential))[0][3]
    assert diff.dvh_type == "DIFFERENTIAL" and diff.volume_cc == pytest.approx(cumulative.volume_cc)
    np.testing.assert_allclose(diff.volume_pct, cumulative.volume_pct, atol=1e-9)
    np.testing.assert_allclose(diff.dose_gy, cumulative.dose_gy - 0.005, atol=1e-12)


# --------------------------------------------------------------------------- the DVH gamma

def _brute_force_gamma(dvh, planning, dd, dv):
    """Exact distance, in units of the criteria, from each point to every piece of the cumulative curve
    drawn sample by sample (no merging): the flat stretch below the lowest dose at 100 %, then per sample
    its vertical step and the flat stretch to the next sample (to infinity after the last)."""
    values, n = dvh.values, dvh.n_voxels
    pieces = [((-np.inf, values[0]), (100.0, 100.0))]
    for j in range(n):
        upper, lower = 100.0 * (n - j) / n, 100.0 * (n - j - 1) / n
        pieces.append(((values[j], values[j]), (lower, upper)))
        pieces.append(((values[j], values[j + 1] if j + 1 < n else np.inf), (lower, lower)))

    def distance(d, v, piece):
        (x0, x1), (y0, y1) = piece
        x = min(max(d, x0), x1)
        y = min(max(v, y0), y1)
        return float(np.hypot((x - d) / dd, (y - v) / dv))

    return np.array([min(distance(d, v, piece) for piece in pieces)
                     for d, v in zip(planning.dose_gy, planning.volume_pct)])


def test_gamma_equals_a_brute_force_search():
    rng = np.random.default_rng(3)
    dvh = dose.DVH(np.r_[rng.normal(5.0, 0.8, 40), 5.0, 5.0, 5.0], 0.01)   # ties: one step of three samples
    at = np.sort(rng.uniform(2.0, 8.0, 30))
    planning = PlanningDVH(1, at, np.clip(dvh.vx_pct(at) + rng.normal(0, 4, 30), 0, 100), None,
                           "CUMULATIVE")
    for dd, dv in ((0.1, 1.0), (0.5, 2.0), (0.02, 0.5)):
        np.testing.assert_allclose(dvh_gamma(dvh, planning, dd, dv), _brute_force_gamma(dvh, planning, dd, dv),
                                   atol=0.006)


def test_gamma_of_a_curve_against_itself_shifted_in_dose():
    """Identical curves: 0 (to the index's resolution). The same curve moved by 0.5 % of the dose in a
    region where it is steep: the volume difference is large, the gamma at most the shift over the dose
    criterion (1 %) plus resolution."""
    dvh = dose.DVH(np.random.default_rng(0).normal(10.0, 0.5, 20000), 0.001)
    at = np.linspace(8.0, 12.0, 41)
    same = PlanningDVH(1, at, dvh.vx_pct(at), None, "CUMULATIVE")
    assert dvh_gamma(dvh, same, 0.1, 1.0).max() <= 0.006
    moved = PlanningDVH(1, at, dvh.vx_pct(at - 0.05), None, "CUMULATIVE")
    assert np.abs(volume_differences(dvh, moved)).max() > 3.0
    g = dvh_gamma(dvh, moved, 0.1, 1.0)
    assert g.max() <= 0.5 + 0.006 and g.max() > 0.1
    with pytest.raises(ValueError):
        dvh_gamma(dvh, same, 0.0, 1.0)


# --------------------------------------------------------------------------- compass dvh --compare-tps

def _compare(example, capsys, *extra):
    args = ["dvh", "--dose", str(example / "rtdose.dcm"), "--structures", str(example / "rtss.dcm"),
            "--compare-tps", *extra]
    assert main(args + ["--json"]) == 0
    return {r["name"]: r for r in json.loads(capsys.readouterr().out)["rois"]}


def test_every_roi_of_the_example_plan_within_1_percent(example, capsys):
    rows = _compare(example, capsys, "--reference-dose", "14")
    for name, (pp, gamma) in MEASURED.items():
        p = rows[name]["planning_system"]
        assert (p["max_volume_diff_pp"], p["gamma_max"]) == pytest.approx((pp, gamma), abs=0.01), name
        assert p["gamma_max"] <= 1.0 and p["gamma_pass_rate"] == 1.0
        assert p["criteria"] == {"dose_pct": 1.0, "volume_pct": 1.0, "reference_dose_gy": 14.0,
                                 "dose_tolerance_gy": 0.14}
    assert rows["Tumor Bed"]["planning_system"]["volume_cc"] == pytest.approx(12.8092, rel=1e-4)
    # A criterion the curves do not meet fails: the test can fail.
    strict = _compare(example, capsys, "--reference-dose", "14", "--gamma", "0.1,0.5", "--roi", "Scar",
                      "--roi", "Borders")
    assert strict["Scar"]["planning_system"]["gamma_max"] > 1.0


def test_table_and_default_reference_dose(example, capsys):
    assert main(["dvh", "--dose", str(example / "rtdose.dcm"), "--structures", str(example / "rtss.dcm"),
                 "--roi", "Heart", "--roi", "Scar", "--compare-tps"]) == 0
    out = capsys.readouterr().out
    assert "against the planning system's DVHs (DVH gamma 1 % of 14.68 Gy = 0.1468 Gy, 1 volume-%):" in out
    assert any(line.startswith("Scar ") and line.split()[-1] == "100" for line in out.splitlines())


def test_compare_tps_refuses_what_it_cannot_compare(example, tmp_path, small_cohort, capsys):
    base = ["dvh", "--structures", str(example / "rtss.dcm")]
    assert main(base + ["--dose", str(example / "rtdose.dcm"), "--gamma", "1,1"]) == 2
    assert "add --compare-tps" in capsys.readouterr().err
    assert main(base + ["--dose", str(example / "rtdose.dcm"), str(example / "rtdose.dcm"), "--compare-tps"]) == 2
    assert "needs the one RTDOSE" in capsys.readouterr().err
    assert main(base + ["--dose", str(example / "rtdose.dcm"), "--compare-tps", "--reference-dose", "-3"]) == 2
    assert "--reference-dose must be a positive dose" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--dose", str(example / "rtdose.dcm"), "--compare-tps", "--gamma", "1"])
    assert "DOSE%,VOLUME%" in capsys.readouterr().err
    no_dvh = _rtdose_with(example, tmp_path, lambda ds: ds.__delattr__("DVHSequence"))
    assert main(base + ["--dose", str(no_dvh), "--compare-tps"]) == 2
    err = capsys.readouterr().err
    assert "holds no planning-system DVH COMPASS can read (no DVHSequence)" in err and str(no_dvh) in err
    # an item it does not read is said, on stderr, and the rest compared
    one_off = _rtdose_with(example, tmp_path, lambda ds: setattr(ds.DVHSequence[1], "DVHType", "NATURAL"))
    assert main(base + ["--dose", str(one_off), "--roi", "Borders", "--roi", "Heart", "--compare-tps",
                        "--json"]) == 0
    captured = capsys.readouterr()
    assert "planning-system DVH of ROI 'Borders' not compared: DVHType NATURAL" in captured.err
    rows = {r["name"]: r for r in json.loads(captured.out)["rois"]}
    assert rows["Borders"]["planning_system"] is None and rows["Heart"]["planning_system"]["gamma_max"] < 1
    # a DVH of an ROI number the structure set does not have is said too
    stray = _rtdose_with(example, tmp_path, lambda ds: setattr(
        ds.DVHSequence[1].DVHReferencedROISequence[0], "ReferencedROINumber", 42))
    assert main(base + ["--dose", str(stray), "--roi", "Heart", "--compare-tps", "--json"]) == 0
    assert "ROI number 42 not compared: the RTSTRUCT has no such ROI" in capsys.readouterr().err
    # inputs are never modified
    assert read_planning_dvhs(example / "rtdose.dcm")[1] == {}
    shutil.rmtree(tmp_path)
