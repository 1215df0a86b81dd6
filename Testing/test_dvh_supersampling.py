"""In-plane supersampling of small ROIs (`dose.supersampled_dvh`, `io.rtstruct.subvoxel_centres`,
`compass dvh --supersample`): the pieces on their own, then the dicompyler example plan
(../shared/data/dicompyler_example) against the planning system's DVHs stored in its RTDOSE.

Reading the planning-system DVHs. DVHData holds (bin width 0.01 Gy, cumulative cc) pairs; the value of
bin i is the volume receiving at least (lower edge + half a bin). The evidence: the planning system's
own DVHMeanDose (% of the 14 Gy prescription) equals the mean of the bins taken that way (Heart 0.6476
vs 0.6477 Gy, Tumor Bed 14.2907 vs 14.2908 Gy; at the lower edges 0.6427 and 14.2858), and so do the
curves of the two large ROIs, which supersampling hardly changes: Heart 0.53 and Lt Lung 0.28
volume-% points from ours at half a bin, 3.47 and 1.71 at the lower edge.

Measured here (relative cumulative DVH: largest difference in volume-% points over all TPS bins; mean
against DVHMeanDose), whole voxels (supersample 1) -> auto:
    ROI              cc    factor  curve pp        mean %
    Borders          1.3   8       7.55 -> 0.28    -0.06 -> +0.12
    Scar             0.51  8      17.42 -> 2.23    +3.13 -> +0.57
    Nodes            0.67  8      12.41 -> 8.40    +4.29 -> +1.59
    Tumor Bed        13    4       2.21 -> 1.27    +0.01 -> +0.01
    Tumor Bed Block  64    4       4.32 -> 1.25    +0.12 -> -0.04
    Heart            440   1       0.53            -0.00
    Breast           400   1       1.08            -0.56
    Lt Lung          2005  1       0.28            -0.38
(BODY: not compared, see test_dvh_dicompyler.py; Areola has no contours on the dose grid.)
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib import dose
from COMPASSLib.cli import main
from COMPASSLib.errors import DoseError
from COMPASSLib.io.rtstruct import rasterise_roi, read_rtstruct, read_rtstruct_contours, subvoxel_centres


# --------------------------------------------------------------------------- the pieces

def _grid(size=(20, 16, 6), spacing=(2.5, 2.5, 3.0), origin=(-10.0, -5.0, 0.0)):
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _circle(cx, cy, z, r, n=90):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t), np.full(n, z)])


def test_auto_rule_in_one_table():
    assert dose.SUPERSAMPLE_AUTO == ((5.0, 8), (100.0, 4))
    assert [dose.auto_supersample(v) for v in (0.3, 4.99, 5.0, 63.0, 99.9, 100.0, 2000.0)] == [8, 8, 4, 4, 4, 1, 1]


def test_factor_one_gives_the_centre_rule_voxels():
    grid = _grid()
    contours = [_circle(3.3, 7.1, z, 9.0) for z in (3.0, 6.0, 9.0)]
    mask = rasterise_roi(contours, grid)
    got = np.zeros_like(mask)
    for k, x, y in subvoxel_centres(contours, grid, 1):
        assert np.allclose(x, np.rint(x)) and np.allclose(y, np.rint(y))
        got[k, np.rint(y).astype(int), np.rint(x).astype(int)] = True
    np.testing.assert_array_equal(got, mask)


def test_subvoxels_converge_to_the_contour_area():
    """A 1 cm circle on a 2.5 mm grid: whole voxels miss its area by 3.5 %, 8 x 8 sub-voxels by 0.07 %."""
    grid = _grid()
    contours = [_circle(3.3, 7.1, z, 5.0) for z in (3.0, 6.0, 9.0)]
    exact_cc = 3 * 3.0 * np.pi * 5.0 ** 2 / 1000 * np.sin(2 * np.pi / 90) / (2 * np.pi / 90)   # 90-gon area
    voxel_cc = dose.voxel_volume_cc(grid)
    whole = rasterise_roi(contours, grid).sum() * voxel_cc
    fine = sum(x.size for _, x, _ in subvoxel_centres(contours, grid, 8)) * voxel_cc / 64
    assert abs(whole / exact_cc - 1) > 0.03
    assert fine == pytest.approx(exact_cc, rel=0.002)


def test_in_plane_interpolation_is_exact_on_a_linear_dose_and_never_extrapolates():
    grid = _grid(size=(5, 4, 2))
    zz, yy, xx = np.mgrid[0:2, 0:4, 0:5]
    plane = 1.0 + 0.5 * xx + 0.25 * yy + 0 * zz
    image = sitk.GetImageFromArray(plane.astype(np.float32))
    image.CopyInformation(grid)
    x, y = np.array([0.0, 1.3, 3.75, 4.0]), np.array([0.0, 2.6, 0.5, 3.0])
    np.testing.assert_allclose(dose.sample_in_plane(image, 1, x, y), 1.0 + 0.5 * x + 0.25 * y, rtol=1e-6)
    # beyond the outermost voxel centres (inside the edge voxels) the edge value, not the line's continuation
    np.testing.assert_allclose(dose.sample_in_plane(image, 0, [-0.4, 4.4], [1.0, -0.4]), [1.25, 3.0], rtol=1e-6)


def test_supersampled_dvh_checks_its_factor():
    with pytest.raises(DoseError, match="whole number"):
        dose.supersampled_dvh(_grid(), iter(()), 0)
    with pytest.raises(DoseError, match="empty"):
        dose.supersampled_dvh(_grid(), iter(()), 4)


# --------------------------------------------------------------------------- the dicompyler example plan

@pytest.fixture(scope="module")
def plan(shared_data):
    from COMPASSLib.io.rtdose import read_rtdose

    folder = shared_data / "dicompyler_example"
    dose_image = read_rtdose(folder / "rtdose.dcm")
    masks = read_rtstruct(folder / "rtss.dcm", dose_image)
    contours = read_rtstruct_contours(folder / "rtss.dcm", dose_image, rois=list(masks))
    return folder, dose_image, masks, contours


@pytest.fixture(scope="module")
def tps(plan):
    """ROI name -> (dose at which each cumulative value holds, relative cumulative volume %, mean Gy) of
    the planning system's DVHs (module docstring: values at lower edge + half a bin; mean = DVHMeanDose
    in % of the RTPLAN's prescription)."""
    import pydicom

    folder = plan[0]
    names = {int(r.ROINumber): str(r.ROIName)
             for r in pydicom.dcmread(folder / "rtss.dcm", stop_before_pixels=True).StructureSetROISequence}
    plan = pydicom.dcmread(folder / "rtplan.dcm", stop_before_pixels=True)
    rx_gy = float(plan.DoseReferenceSequence[0].TargetPrescriptionDose)
    out = {}
    for item in pydicom.dcmread(folder / "rtdose.dcm", stop_before_pixels=True).DVHSequence:
        data = np.array([float(v) for v in item.DVHData]).reshape(-1, 2)
        widths = data[:, 0] * float(item.DVHDoseScaling)
        at = np.r_[0.0, np.cumsum(widths)][:-1] + widths / 2
        out[names[int(item.DVHReferencedROISequence[0].ReferencedROINumber)]] = (
            at, 100 * data[:, 1] / data[0, 1], float(item.DVHMeanDose) * rx_gy / 100)
    return out


def _ours(plan, roi, factor):
    _, dose_image, masks, contours = plan
    if factor == 1:
        return dose.dvh(dose_image, masks[roi])
    return dose.supersampled_dvh(dose_image, subvoxel_centres(contours[roi], dose_image, factor, roi), factor)


def _curve_pp(dvh, at, tps_pct) -> float:
    ours = 100 * (dvh.n_voxels - np.searchsorted(dvh.values, at, side="left")) / dvh.n_voxels
    return float(np.abs(ours - tps_pct).max())


def _auto(plan, roi):
    return dose.auto_supersample(dose.dvh(plan[1], plan[2][roi]).volume_cc)


# ROI -> (whole-voxel curve pp, auto curve pp, auto mean %): the measured values of the module docstring,
# asserted to 0.05 pp / 0.05 % so that a change of method shows here first.
MEASURED = {"Borders": (7.55, 0.28, 0.12), "Scar": (17.42, 2.23, 0.57), "Nodes": (12.41, 8.40, 1.59),
            "Tumor Bed": (2.21, 1.27, 0.01), "Tumor Bed Block": (4.32, 1.25, -0.04), "Heart": (0.53, 0.53, -0.00),
            "Breast": (1.08, 1.08, -0.56), "Lt Lung": (0.28, 0.28, -0.38)}

# ROIs whose planning-system DVH cannot be met within 1 volume-% point, and why it is the reference's.
# Each of them covers clearly less volume in the planning system than its contours enclose (TPS cc vs the
# contours' 8 x 8 sub-voxel volume): Tumor Bed 12.81 vs 13.16 (-2.7 %), Tumor Bed Block 62.88 vs 63.85
# (-1.5 %), Breast 396.2 vs 400.0 (-1.0 %), Nodes 0.566 vs 0.669 (-15 %), Scar 0.343 vs 0.514 (-33 %),
# against Heart -0.5 % and Lt Lung +0.2 %, which agree within 0.6 points (Borders, 0.745 vs 1.29 cc, agrees
# too: whatever the TPS left out received the same dose as the rest). The TPS volumes are close to
# the contours with the two end planes at half weight (shape interpolated between planes and ending at
# the outermost contours: Breast 396.0, Tumor Bed 12.74, Tumor Bed Block 62.66, Nodes 0.547 cc), so its
# DVH leaves out part of the end slabs and edges that the slab-per-plane convention counts (dicompyler-
# core's too). Reweighting the end planes by half was measured (8 x 8 sub-voxels) and is not a fix: Tumor
# Bed 0.84, Breast 0.49 and Nodes 4.95 points, but Tumor Bed Block 1.37 and Scar 3.81 get worse. Where the curves differ
# the dose differences are small: Tumor Bed's 1.27 points are at 14.3 Gy, where its curve falls 4 points
# per 0.01 Gy (0.003 Gy, 0.02 %: within 0.35 points with a quarter-bin dose tolerance); Scar (3 mm wide,
# a third of it lost in the TPS) and Nodes (0.08-0.16 Gy, the whole DVH 8 TPS bins wide, half of its 4
# planes end planes) are the extreme cases. The bounds are the measured values plus a small margin.
NOT_WITHIN_1PP = {"Tumor Bed": 1.35, "Tumor Bed Block": 1.35, "Breast": 1.15, "Scar": 2.4, "Nodes": 8.6}
MEAN_NOT_WITHIN_1PCT = {"Nodes": 1.7}   # the same reason: +1.59 % is 0.0017 Gy of a 0.108 Gy mean


@pytest.mark.parametrize("roi", list(MEASURED))
def test_against_the_planning_system_dvh(plan, tps, roi):
    at, tps_pct, tps_mean = tps[roi]
    whole, auto = _ours(plan, roi, 1), _ours(plan, roi, _auto(plan, roi))
    before, after = _curve_pp(whole, at, tps_pct), _curve_pp(auto, at, tps_pct)
    mean_pct = 100 * (auto.mean_gy / tps_mean - 1)
    print(f"{roi}: {whole.volume_cc:.4g} cc, factor {_auto(plan, roi)}, curve {before:.2f} -> {after:.2f} pp, "
          f"mean {100 * (whole.mean_gy / tps_mean - 1):+.2f} -> {mean_pct:+.2f} %")
    expected_before, expected_after, expected_mean = MEASURED[roi]
    assert (before, after, mean_pct) == pytest.approx((expected_before, expected_after, expected_mean), abs=0.05)
    assert after <= NOT_WITHIN_1PP.get(roi, 1.0)
    assert abs(mean_pct) <= MEAN_NOT_WITHIN_1PCT.get(roi, 1.0)
    if _auto(plan, roi) > 1:
        assert after < before


def test_scar_volume_matches_dicompyler_core_interpolated(plan):
    """dicompyler-core's use_structure_extents + interpolation_resolution=2.5/8 (EXPECTED_VALUES.md) is
    8 x 8 sub-voxels on this 2.5 mm grid: volume 0.51590551 cc, ours 0.5136. Its doses are not compared:
    its mean 7.695 Gy and maximum 12.98 Gy are 22 % and 1.4 Gy above the planning system's 6.320 and
    11.55 Gy, ours 6.356 and 11.92 Gy."""
    scar = _ours(plan, "Scar", 8)
    assert scar.volume_cc == pytest.approx(0.51590551, rel=0.01)
    assert scar.mean_gy == pytest.approx(6.320, rel=0.01)


# --------------------------------------------------------------------------- compass dvh

def test_cli_supersample_option(shared_data, capsys):
    folder = shared_data / "dicompyler_example"
    args = ["dvh", "--dose", str(folder / "rtdose.dcm"), "--structures", str(folder / "rtss.dcm"),
            "--roi", "Heart", "--roi", "Tumor Bed", "--json"]
    assert main(args + ["--supersample", "1"]) == 0
    off = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rois"]}
    assert main(args) == 0   # auto
    auto = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rois"]}
    assert off["Tumor Bed"]["supersample"] == 1 and auto["Tumor Bed"]["supersample"] == 4
    assert off["Tumor Bed"]["volume_cc"] == pytest.approx(13.07, rel=0.01)    # dicompyler-core, whole voxels
    assert auto["Tumor Bed"]["volume_cc"] == pytest.approx(13.14, rel=0.002)
    assert auto["Heart"] == off["Heart"]                                      # 440 cc: whole voxels either way
    assert set(auto["Tumor Bed"]) == set(off["Tumor Bed"])
    assert main(args[:-1] + ["--supersample", "8"]) == 0
    assert "in-plane sub-voxels per voxel side (--supersample): Heart 8, Tumor Bed 8" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(args + ["--supersample", "0"])
    assert refused.value.code == 2 and "--supersample" in capsys.readouterr().err


def test_cli_supersampling_a_labelmap_is_refused(shared_data, tmp_path, capsys):
    from COMPASSLib.io.rtdose import read_rtdose

    folder = shared_data / "dicompyler_example"
    dose_image = read_rtdose(folder / "rtdose.dcm")
    scar = read_rtstruct(folder / "rtss.dcm", dose_image, rois=["Scar"])["Scar"]
    sitk.WriteImage(dose_image, str(tmp_path / "dose.nrrd"))
    sitk.WriteImage(scar, str(tmp_path / "scar.nrrd"))
    args = ["dvh", "--dose", str(tmp_path / "dose.nrrd"), "--structures", str(tmp_path / "scar.nrrd"), "--json"]
    assert main(args) == 0        # auto: a labelmap has only whole voxels
    (row,) = json.loads(capsys.readouterr().out)["rois"]
    assert row["supersample"] == 1 and row["volume_cc"] == pytest.approx(0.4875, rel=1e-6)
    assert main(args + ["--supersample", "4"]) == 2
    assert "needs contours" in capsys.readouterr().err
