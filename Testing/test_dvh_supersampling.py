"""In-plane supersampling of small ROIs (`dose.supersampled_dvh`, `io.rtstruct.subvoxel_centres`,
`compass dvh --supersample`): the pieces on their own, then the dicompyler example plan
(../shared/data/dicompyler_example) against the planning system's DVHs stored in its RTDOSE.

The planning-system DVHs are read by `io.planning_dvh` (each cumulative value at its bin's lower edge plus
half a bin; its docstring has the evidence, test_dvh_planning_system.py checks it against DVHMeanDose).

Measured here (relative cumulative DVH: largest difference in volume-% points over all TPS bins; mean
against DVHMeanDose), whole voxels (supersample 1) -> the auto factor with the slab rule (--between-planes
slab) -> the same factor with the shape interpolated between contour planes (the default):
    ROI              cc    factor  curve pp               mean %           cc (TPS)
    Borders          1.2   8       7.55 -> 0.28 -> 1.66   +0.12 -> -0.07   0.878 (0.745)
    Scar             0.49  8      17.42 -> 2.23 -> 1.41   +0.57 -> -0.69   0.354 (0.343)
    Nodes            0.66  8      12.41 -> 8.40 -> 2.30   +1.59 -> +0.60   0.583 (0.566)
    Tumor Bed        13    4       2.21 -> 1.27 -> 0.34   +0.01 -> +0.00   12.82 (12.81)
    Tumor Bed Block  63    4       4.32 -> 1.25 -> 0.76   -0.04 -> -0.03   63.01 (62.88)
    Heart            440   2       0.53 -> 0.35 -> 0.26   -0.15 -> -0.16   435.0 (437.5)
    Breast           400   2       1.08 -> 1.02 -> 0.22   -0.84 -> -0.09   396.2 (396.2)
    Lt Lung          2005  2       0.28 -> 0.20 -> 0.09   -0.02 -> +0.10   2002 (2009)
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
from COMPASSLib.io.shape_interpolation import BetweenPlanes


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
    assert dose.SUPERSAMPLE_AUTO == ((5.0, 8), (100.0, 4)) and dose.SUPERSAMPLE_AUTO_LARGE == 2
    assert [dose.auto_supersample(v) for v in (0.3, 4.99, 5.0, 63.0, 99.9, 100.0, 2000.0)] == [8, 8, 4, 4, 4, 2, 2]
    assert [dose.sub_slices(f) for f in (1, 2, 3, 4, 8, 16)] == [2, 2, 4, 4, 8, 16]


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


def _solid_cc(contours, grid, factor=8, layers=8):
    solid = BetweenPlanes(contours, grid, factor, layers)
    return sum(x.size for _, x, _ in solid) * dose.voxel_volume_cc(grid) * solid.slice_fraction / factor ** 2


def test_a_cylinder_of_planes_closes_half_a_spacing_beyond_its_ends():
    """N equal circles: the solid between the outermost planes, (N - 1) spacings of the circle's area, and
    two caps of half a spacing whose cross-section shrinks inward uniformly (radius R (1 - u)), each
    spacing / 6 of the area: (N - 1 + 1/3) spacings in all, where the slab rule counts N."""
    grid = _grid(size=(20, 16, 8))
    r, planes = 6.0, (3.0, 6.0, 9.0, 12.0)
    area_cc = np.pi * r ** 2 / 1000 * np.sin(2 * np.pi / 90) / (2 * np.pi / 90)
    expected = area_cc * 3.0 * (len(planes) - 1 + 1 / 3)
    assert _solid_cc([_circle(3.3, 7.1, z, r) for z in planes], grid) == pytest.approx(expected, rel=0.01)


def test_between_two_circles_a_truncated_cone():
    """Concentric circles of radii 3 and 7 mm one spacing apart: interpolated signed distances give a
    radius linear in z, so the part between the planes is a frustum, pi h (R1^2 + R1 R2 + R2^2) / 3."""
    grid = _grid(size=(20, 16, 8))
    r1, r2, h = 3.0, 7.0, 3.0
    solid = BetweenPlanes([_circle(3.3, 7.1, 6.0, r1, 360), _circle(3.3, 7.1, 9.0, r2, 360)], grid, 16, 16)
    inner = [(k, x) for k, x, _ in solid if 2.0 < k < 3.0]     # planes at slices 2 and 3: between them only
    got = sum(x.size for _, x in inner) * dose.voxel_volume_cc(grid) * solid.slice_fraction / 16 ** 2
    assert got == pytest.approx(np.pi * h * (r1 ** 2 + r1 * r2 + r2 ** 2) / 3 / 1000, rel=0.01)


def test_planes_far_apart_are_not_bridged_and_the_grid_bounds_the_solid():
    grid = _grid(size=(20, 16, 8))
    two_parts = [_circle(3.3, 7.1, z, 6.0) for z in (3.0, 6.0, 18.0, 21.0)]   # a gap of 4 spacings
    one_part = [_circle(3.3, 7.1, z, 6.0) for z in (3.0, 6.0)]
    assert _solid_cc(two_parts, grid) == pytest.approx(2 * _solid_cc(one_part, grid), rel=0.005)
    slices = [k for k, _, _ in BetweenPlanes(two_parts, grid, 4, 4)]
    assert not any(2.5 < k < 5.5 for k in slices)   # planes at slices 1, 2 and 6, 7: each pair closes
    # the grid's first slice centre is z = 0: a plane below it (slice -1) adds only what lies in the grid
    at_edge = [_circle(3.3, 7.1, z, 6.0) for z in (-3.0, 0.0)]
    assert min(k for k, _, _ in BetweenPlanes(at_edge, grid, 4, 4)) >= -0.5
    assert _solid_cc(at_edge, grid) < _solid_cc([_circle(3.3, 7.1, z, 6.0) for z in (6.0, 9.0)], grid)


def test_one_skipped_plane_is_interpolated_across():
    """Circles on planes 1, 2, 4, 5 (plane 3 left out, as when every other slice was contoured): the same
    solid as with plane 3 drawn."""
    grid = _grid(size=(20, 16, 8))
    drawn = _solid_cc([_circle(3.3, 7.1, z, 6.0) for z in (3.0, 6.0, 9.0, 12.0, 15.0)], grid)
    skipped = _solid_cc([_circle(3.3, 7.1, z, 6.0) for z in (3.0, 6.0, 12.0, 15.0)], grid)
    assert skipped == pytest.approx(drawn, rel=0.005)


def test_dose_between_slices_is_linear_and_clamped():
    grid = _grid(size=(5, 4, 3))
    zz, yy, xx = np.mgrid[0:3, 0:4, 0:5]
    image = sitk.GetImageFromArray((1.0 + 0.5 * xx + 2.0 * zz + 0 * yy).astype(np.float32))
    image.CopyInformation(grid)
    x, y = np.array([0.0, 1.5, 3.25]), np.array([0.0, 2.0, 1.0])
    for k in (0.0, 0.25, 1.5, 2.0):
        np.testing.assert_allclose(dose.sample_between_slices(image, k, x, y), 1.0 + 0.5 * x + 2.0 * k, rtol=1e-6)
    np.testing.assert_allclose(dose.sample_between_slices(image, -0.4, x, y), 1.0 + 0.5 * x, rtol=1e-6)
    np.testing.assert_allclose(dose.sample_between_slices(image, 2.4, x, y), 5.0 + 0.5 * x, rtol=1e-6)
    with pytest.raises(DoseError, match="slice_fraction"):
        dose.supersampled_dvh(image, iter(()), 2, slice_fraction=0.0)


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
    """ROI name -> (dose at which each cumulative value holds, relative cumulative volume %, mean Gy, cc) of
    the planning system's DVHs, read by `io.planning_dvh` (values at lower edge + half a bin, its module
    docstring says why); mean = DVHMeanDose in % of the RTPLAN's prescription."""
    import pydicom

    from COMPASSLib.io.planning_dvh import read_planning_dvhs
    from COMPASSLib.io.rtstruct import roi_numbers

    folder = plan[0]
    names = roi_numbers(folder / "rtss.dcm")
    rx_gy = float(pydicom.dcmread(folder / "rtplan.dcm", stop_before_pixels=True)
                  .DoseReferenceSequence[0].TargetPrescriptionDose)
    curves, _ = read_planning_dvhs(folder / "rtdose.dcm")
    out = {}
    for item in pydicom.dcmread(folder / "rtdose.dcm", stop_before_pixels=True).DVHSequence:
        c = curves[int(item.DVHReferencedROISequence[0].ReferencedROINumber)]
        out[names[c.roi_number]] = (c.dose_gy, c.volume_pct, float(item.DVHMeanDose) * rx_gy / 100, c.volume_cc)
    return out


def _ours(plan, roi, factor, between_planes="slab"):
    _, dose_image, masks, contours = plan
    if factor == 1:
        return dose.dvh(dose_image, masks[roi])
    if between_planes == "interpolated":
        solid = BetweenPlanes(contours[roi], dose_image, factor, dose.sub_slices(factor), roi)
        return dose.supersampled_dvh(dose_image, solid, factor, slice_fraction=solid.slice_fraction)
    return dose.supersampled_dvh(dose_image, subvoxel_centres(contours[roi], dose_image, factor, roi), factor)


def _curve_pp(dvh, at, tps_pct) -> float:
    return float(np.abs(dvh.vx_pct(at) - tps_pct).max())


def _auto(plan, roi):
    return dose.auto_supersample(dose.dvh(plan[1], plan[2][roi]).volume_cc)


def _curve_pp_within(dvh, at, tps_pct, dose_tolerance_gy) -> float:
    """The same, but a TPS point is met when our curve passes through it anywhere within
    +-`dose_tolerance_gy` of its dose (how far off in volume where it is not)."""
    shifts = np.linspace(-dose_tolerance_gy, dose_tolerance_gy, 21)
    ours = np.array([dvh.vx_pct(at + s) for s in shifts])
    return float((np.maximum(ours.min(0) - tps_pct, 0) + np.maximum(tps_pct - ours.max(0), 0)).max())


# ROI -> (whole-voxel, slab, interpolated curve pp; interpolated mean %): the measured values of the module
# docstring, asserted to 0.05 pp / 0.05 % so that a change of method shows here first.
MEASURED = {"Borders": (7.55, 0.28, 1.66, -0.07), "Scar": (17.42, 2.23, 1.41, -0.69),
            "Nodes": (12.41, 8.40, 2.30, 0.60), "Tumor Bed": (2.21, 1.27, 0.34, 0.00),
            "Tumor Bed Block": (4.32, 1.25, 0.76, -0.03), "Heart": (0.53, 0.35, 0.26, -0.16),
            "Breast": (1.08, 1.02, 0.22, -0.09), "Lt Lung": (0.28, 0.20, 0.09, 0.10)}

# The three sub-cc ROIs whose planning-system curve the default still misses by more than 1 volume-% point.
# Their DVHs are a few TPS bins wide in dose (Nodes 0.075-0.155 Gy: 8 bins of 0.01 Gy, 12 points a bin), so
# a dose difference of a quarter bin (0.0025 Gy) moves the curve by 3 points: within that dose tolerance
# Borders and Nodes meet every TPS point within 0.5 points. Scar (3 mm wide, 0.9-12 Gy across it) stays 1.4
# points below the TPS curve over 4-7.5 Gy whatever the sampling (sub-slices 4-16, sub-voxels 8-16: 1.4-1.6),
# a dose 0.1 Gy (2 %) lower over a third of it: the planning system's dose there is not the RTDOSE's
# trilinear interpolation. Borders is the one ROI the slab rule met better (0.28): its TPS volume, 0.745 cc,
# is 15 % below the interpolated solid's 0.878 and 42 % below the slabs' 1.29 (what the TPS left out of it
# is not known). Closing the ends at a quarter of a spacing instead of half (measured, not kept: a length
# fitted to this one planning system, with no reason of its own) gives Nodes 0.86, Borders 1.36 (its TPS
# volume to 0.3 %), Scar 1.42 and Tumor Bed -0.5 % in volume. The bounds are the measured values plus a
# small margin. In dose and volume together all three are within 1 % (DVH gamma 1 % of 14 Gy / 1 volume-%:
# Borders 0.03, Nodes 0.02, Scar 0.87; test_dvh_planning_system.py).
NOT_WITHIN_1PP = {"Borders": 1.75, "Scar": 1.5, "Nodes": 2.4}
WITHIN_QUARTER_BIN = {"Borders": 0.55, "Nodes": 0.6}


@pytest.mark.parametrize("roi", list(MEASURED))
def test_against_the_planning_system_dvh(plan, tps, roi):
    at, tps_pct, tps_mean, _ = tps[roi]
    factor = _auto(plan, roi)
    whole, slab, solid = (_ours(plan, roi, 1), _ours(plan, roi, factor, "slab"),
                          _ours(plan, roi, factor, "interpolated"))
    curves = tuple(_curve_pp(d, at, tps_pct) for d in (whole, slab, solid))
    mean_pct = 100 * (solid.mean_gy / tps_mean - 1)
    print(f"{roi}: {whole.volume_cc:.4g} cc, factor {factor}, curve {curves[0]:.2f} -> {curves[1]:.2f} -> "
          f"{curves[2]:.2f} pp, mean {mean_pct:+.2f} %, {solid.volume_cc:.4g} cc")
    assert (*curves, mean_pct) == pytest.approx(MEASURED[roi], abs=0.05)
    assert curves[2] <= NOT_WITHIN_1PP.get(roi, 1.0)
    if roi in WITHIN_QUARTER_BIN:
        assert _curve_pp_within(solid, at, tps_pct, 0.0025) <= WITHIN_QUARTER_BIN[roi]
    assert abs(mean_pct) <= 1.0
    assert curves[2] < curves[0]


def test_the_interpolated_solid_holds_the_planning_systems_volume(plan, tps):
    """The planning system's ROI volumes (the first DVHData value) are those of the solid between the
    contour planes, not the slabs': within 0.5 % for Tumor Bed, Tumor Bed Block, Breast and Lt Lung
    (slabs: +2.7 %, +1.5 %, +1.0 %, -0.2 % at 8 x 8)."""
    for roi in ("Tumor Bed", "Tumor Bed Block", "Breast", "Lt Lung"):
        tps_cc = float(tps[roi][3])
        solid = _ours(plan, roi, _auto(plan, roi), "interpolated")
        assert solid.volume_cc == pytest.approx(tps_cc, rel=0.005), roi


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
    assert main(args + ["--between-planes", "slab"]) == 0
    slab = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rois"]}
    assert off["Tumor Bed"]["supersample"] == 1 and auto["Tumor Bed"]["supersample"] == 4
    assert (off["Tumor Bed"]["between_planes"], slab["Tumor Bed"]["between_planes"],
            auto["Tumor Bed"]["between_planes"]) == ("voxels", "slab", "interpolated")
    assert off["Tumor Bed"]["volume_cc"] == pytest.approx(13.07, rel=0.01)    # dicompyler-core, whole voxels
    assert slab["Tumor Bed"]["volume_cc"] == pytest.approx(13.14, rel=0.002)  # slabs of sub-voxels
    assert auto["Tumor Bed"]["volume_cc"] == pytest.approx(12.81, rel=0.002)  # the solid: the TPS's 12.81
    assert auto["Heart"]["supersample"] == 2 and auto["Heart"]["volume_cc"] == pytest.approx(435.0, rel=0.002)
    assert set(auto["Tumor Bed"]) == set(off["Tumor Bed"])
    assert main(args[:-1] + ["--supersample", "8"]) == 0
    assert ("in-plane sub-voxels per voxel side (--supersample): Heart 8, Tumor Bed 8; between contour planes: "
            "interpolated") in capsys.readouterr().out
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
    assert row["between_planes"] == "voxels"
    assert main(args + ["--supersample", "4"]) == 2
    assert "needs contours" in capsys.readouterr().err
    assert main(args + ["--between-planes", "interpolated"]) == 2
    assert "--between-planes interpolated needs contours" in capsys.readouterr().err


def test_cli_supersampling_refuses_what_memory_cannot_hold(shared_data, capsys, monkeypatch):
    """BODY (14,900 cc, 744,000 dose voxels) at 16 x 16 sub-voxels and 16 sub-slices would be 3 billion
    samples: refused before any is made, naming the ROI and the option to change."""
    from COMPASSLib import memory

    folder = shared_data / "dicompyler_example"
    monkeypatch.setenv(memory.ENV, "2G")
    args = ["dvh", "--dose", str(folder / "rtdose.dcm"), "--structures", str(folder / "rtss.dcm"), "--roi", "BODY"]
    assert main(args + ["--supersample", "16"]) == 2
    err = capsys.readouterr().err
    assert "DVH of ROI 'BODY' at 16 x 16 sub-voxels needs an estimated" in err and "--supersample" in err
    assert "Traceback" not in err


def test_contours_sparser_than_the_dose_slices_are_sampled_as_finely():
    """Contours every 3 slices: 3 x as many sub-slices, each still 1/4 slice thick; the volume is the
    cylinder rule's (N - 1 + 1/3) spacings."""
    grid = _grid(size=(20, 16, 12))
    planes = (3.0, 12.0, 21.0)
    solid = BetweenPlanes([_circle(3.3, 7.1, z, 6.0) for z in planes], grid, 4, 4)
    assert solid.spacing == pytest.approx(3.0) and solid.sub_slices == 12
    assert solid.slice_fraction == pytest.approx(0.25)
    area_cc = np.pi * 36 / 1000 * np.sin(2 * np.pi / 90) / (2 * np.pi / 90)
    assert _solid_cc([_circle(3.3, 7.1, z, 6.0) for z in planes], grid, 8, 4) == pytest.approx(
        area_cc * 9.0 * (2 + 1 / 3), rel=0.01)
