"""Thin organs on a CT rotated about the patient's long axis (in-plane direction cosines not axis-aligned).

A user found a spinal cord at 19.4 cc on such a CT instead of 25.9 cc on the axial original, the other
organs within 0.5 %. Where it was lost: not in ingest (RTSTRUCT contours are rasterised straight onto
the reference grid, whatever its direction) but in the rasterisation itself, and the same in
`geometry.resample_mask` for labelmaps. Both keep a voxel when one point of it is inside (its centre;
the 0.5 partial-volume level); for an organ a few voxels across that runs along the slice normal, the
contour meets the same lattice phase on every slice, so the error does not average out. Measured before
the fix on the synthetic thorax (3 mm grid, cord of 8 voxels per slice, 19.44 cc axial), cord volume
on the same grid rotated 10 / 20 / 25 / 30 / 45 degrees: RTSTRUCT -12.5 / -12.5 / 0.0 / -12.5 / -50 %,
labelmap (resample_mask) at 10 / 25 / 45 degrees -12.5 / 0.0 / -50 %; heart, lungs, body within 0.6 %.

The fix (io/rtstruct.py, geometry.py): on a rotated grid, a mask that misses the partial-volume
estimate by more than geometry.THIN_VOLUME_TOLERANCE (3 %) is rebuilt to hold that volume. After it,
the synthetic cord: RTSTRUCT 18.23 cc at every angle (-6.2 % from the axial 19.44 cc, because the
synthetic contours run through the mid-points between inside and outside voxel centres and enclose
18.23 cc: no grid but the one they were traced on gives back 19.44 cc), 18.06 cc at 45 degrees;
labelmap 19.44 cc at every angle. Axis-aligned grids are untouched (the centre rule is dicompyler-core's
and MIRP's, which other tests hold us to).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath

from COMPASSLib.geometry import axes_rotated, resample_mask, volume_preserving_mask
from COMPASSLib.io.rtstruct import rasterise_roi
from helpers_dicom import write_rtdose, write_rtstruct, write_series

SPACING, N, SLICES = (2.0, 2.0, 3.0), 90, 10        # 180 x 180 x 30 mm CT
CORD_R, CORD_CENTRE = 5.0, (1.5, 1.5)                # a 1 cm cord
# The axial centre rule of a 1 cm cord on a 2 mm grid depends on where the cord sits against the voxel
# centres (-18 % to +7 % here); it is put where the axial original holds its contour area (+2.0 %), as the
# user's did (25.9 cc = pi (0.5 cm)^2 x 33 cm), so that the axial original is a fair reference.
OTHERS = {"Heart": (35.0, (5.0, -45.0)), "Esophagus": (9.0, (-25.0, 20.0))}   # radius mm, centre mm


def _circle(centre, r, z, n=64):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + 0.013   # no vertex on a voxel centre (ties)
    return np.column_stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t), np.full(n, z)])


def _polygon_area(r, n=64):
    return 0.5 * n * r * r * math.sin(2 * math.pi / n)


def _contours():
    zs = [SPACING[2] * k for k in range(SLICES)]
    rois = {"SpinalCord": [_circle(CORD_CENTRE, CORD_R, z) for z in zs]}
    rois.update({name: [_circle(c, r, z) for z in zs] for name, (r, c) in OTHERS.items()})
    return rois


def _direction(degrees):
    a = math.radians(degrees)
    return (math.cos(a), -math.sin(a), 0.0, math.sin(a), math.cos(a), 0.0, 0.0, 0.0, 1.0)


def _grid(degrees):
    """The CT grid, centred on the patient axis and rotated `degrees` about it."""
    d = np.array(_direction(degrees)).reshape(3, 3)
    grid = sitk.Image([N, N, SLICES], sitk.sitkUInt8)
    grid.SetSpacing(SPACING)
    grid.SetDirection(_direction(degrees))
    grid.SetOrigin(tuple(-d @ np.array([(N - 1) / 2 * SPACING[0], (N - 1) / 2 * SPACING[1], 0.0])))
    return grid


def _cc(mask) -> float:
    array = sitk.GetArrayViewFromImage(mask) if not isinstance(mask, np.ndarray) else mask
    return float(np.count_nonzero(array)) * float(np.prod(SPACING)) / 1000


def _direct(contours, grid, sub=1):
    """Contours rasterised on `grid` without COMPASS: matplotlib's point-in-polygon on `sub` x `sub`
    points per voxel in physical space (sub 1: the voxel centres, the centre rule; larger: the partial-
    volume fraction), over the voxels around each contour. Every contour lies on a slice plane here."""
    d = np.array(grid.GetDirection()).reshape(3, 3)
    s, origin = np.array(grid.GetSpacing()), np.array(grid.GetOrigin())
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    out = np.zeros((SLICES, N, N))
    for contour in contours:
        index = ((contour - origin) @ np.linalg.inv(d).T) / s
        k = int(round(index[0, 2]))
        i0, j0 = np.floor(index[:, :2].min(axis=0)).astype(int)
        i1, j1 = np.ceil(index[:, :2].max(axis=0)).astype(int)
        i = np.arange(max(i0, 0), min(i1, N - 1) + 1)
        j = np.arange(max(j0, 0), min(j1, N - 1) + 1)
        jj, ii = np.meshgrid(np.add.outer(j, offsets).ravel(), np.add.outer(i, offsets).ravel(), indexing="ij")
        xyz = origin + np.column_stack([ii.ravel() * s[0], jj.ravel() * s[1], np.full(ii.size, k * s[2])]) @ d.T
        inside = MplPath(contour[:, :2]).contains_points(xyz[:, :2]).reshape(j.size, sub, i.size, sub)
        out[k, j[0]:j[-1] + 1, i[0]:i[-1] + 1] += inside.mean(axis=(1, 3))
    return out


# --------------------------------------------------------------------------- the normal ingest path

def _patient(folder, degrees):
    """CT (rotated `degrees` about the patient axis), RTSTRUCT, RTDOSE (axial), as a clinic would export."""
    from COMPASSLib.scan import scan

    grid = _grid(degrees)
    d = grid.GetDirection()
    write_series(folder / "ct", np.zeros((SLICES, N, N), np.int16), spacing=SPACING, origin=grid.GetOrigin(),
                 orientation=(d[0], d[3], d[6], d[1], d[4], d[7]), intercept=-1024.0)
    write_rtstruct(folder / "rs.dcm", _contours())
    write_rtdose(folder / "rd.dcm", np.full((SLICES, 40, 40), 2.0), origin=(-80.0, -80.0, 0.0),
                 spacing=(4.0, 4.0, 3.0))
    manifest = folder / "cohort.json"
    scan(folder, manifest_path=manifest).save(manifest)
    return manifest


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from COMPASSLib.ingest import PatientLoader

    out = {}
    for degrees in (0, 25):
        manifest = _patient(tmp_path_factory.mktemp(f"ct{degrees}"), degrees)
        loader = PatientLoader(manifest, "P001", modalities=("rtstruct",))
        grid = loader.reference_grid()
        out[degrees] = (grid, loader.masks(1, grid))
    return out


def test_the_written_ct_is_rotated(ingested):
    grid, _ = ingested[25]
    np.testing.assert_allclose(grid.GetDirection(), _direction(25), atol=1e-5)
    assert axes_rotated(grid.GetDirection()) and not axes_rotated(ingested[0][0].GetDirection())


def test_cord_volume_on_the_rotated_ct(ingested):
    _, axial = ingested[0]
    grid, masks = ingested[25]
    contours = _contours()["SpinalCord"]
    exact = SLICES * SPACING[2] * _polygon_area(CORD_R) / 1000
    direct = _direct(contours, grid, sub=16).sum() * np.prod(SPACING) / 1000     # partial volume, no COMPASS
    centre_rule = _cc(_direct(contours, grid) > 0)
    print(f"cord cc: contour {exact:.3f}, axial original {_cc(axial['SpinalCord']):.3f}, direct on the rotated "
          f"grid {direct:.3f} (centre rule {centre_rule:.3f}), ingest {_cc(masks['SpinalCord']):.3f}")
    assert direct == pytest.approx(exact, rel=0.005)
    assert _cc(axial["SpinalCord"]) == pytest.approx(exact, rel=0.025)         # a fair axial original
    assert abs(centre_rule / direct - 1) > 0.06                                  # what the user saw (-8 %)
    assert _cc(masks["SpinalCord"]) == pytest.approx(direct, rel=0.03)
    assert _cc(masks["SpinalCord"]) == pytest.approx(_cc(axial["SpinalCord"]), rel=0.03)
    # still a cord: one blob per slice, on every slice
    cord = sitk.GetArrayFromImage(masks["SpinalCord"]).astype(bool)
    assert cord.any(axis=(1, 2)).all()


def test_other_organs_unchanged(ingested):
    """The heart keeps the centre rule's voxels and its volume (within 0.5 % of the axial original). The
    esophagus (9 voxels across) keeps the centre rule's voxels at 25 degrees too, which hold its contour
    volume to 0.9 % there; on the axial grid the centre rule misses it by 5.6 %, which the axial original
    keeps by design (module docstring): hence no comparison with it."""
    _, axial = ingested[0]
    grid, masks = ingested[25]
    for organ in OTHERS:
        contours = _contours()[organ]
        expected = _direct(contours, grid) > 0
        np.testing.assert_array_equal(sitk.GetArrayFromImage(masks[organ]).astype(bool), expected, err_msg=organ)
        direct = _direct(contours, grid, sub=16).sum() * np.prod(SPACING) / 1000
        assert _cc(masks[organ]) == pytest.approx(direct, rel=0.01), organ
    assert _cc(masks["Heart"]) == pytest.approx(_cc(axial["Heart"]), rel=0.005)


@pytest.mark.parametrize("degrees", [10, 20, 30, 37, 45])
def test_thin_cord_within_tolerance_of_direct_rasterisation_at_any_angle(degrees):
    rng = np.random.default_rng(degrees)
    for _ in range(3):
        centre = rng.uniform(-2, 2, 2)
        contours = [_circle(centre, 4.0 + rng.uniform(0, 2), SPACING[2] * k) for k in range(SLICES)]
        grid = _grid(degrees)
        direct = _direct(contours, grid, sub=16).sum()
        ours = np.count_nonzero(rasterise_roi(contours, grid))
        assert ours == pytest.approx(direct, rel=0.03), (degrees, ours, direct)


def test_axis_aligned_grids_keep_the_centre_rule_even_for_a_thin_cord():
    """Axial: the voxel centres, bitwise, also where they miss the cord's area (here by 18 %)."""
    contours = [_circle((1.0, 0.0), CORD_R, SPACING[2] * k) for k in range(SLICES)]
    for degrees in (0, 90, 180):
        grid = _grid(degrees)
        expected = _direct(contours, grid) > 0
        np.testing.assert_array_equal(rasterise_roi(contours, grid), expected)
    assert abs(_cc(expected) / (SLICES * SPACING[2] * _polygon_area(CORD_R) / 1000) - 1) > 0.15


# --------------------------------------------------------------------------- labelmaps (resample_mask)

def _labelmap(axial_masks):
    """The axial masks as one labelmap image: cord 1, heart 2, esophagus 3."""
    labels = np.zeros((SLICES, N, N), np.uint8)
    for value, organ in enumerate(("SpinalCord", "Heart", "Esophagus"), start=1):
        labels[sitk.GetArrayViewFromImage(axial_masks[organ]) > 0] = value
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(_grid(0))
    return image


def test_labelmap_keeps_volumes_on_a_rotated_grid(ingested, tmp_path):
    """The axial masks as a labelmap read onto rotated grids (resample_mask): every organ within 3 % of its
    axial voxels (before: the cord -8 % to -50 %), the heart with the 0.5 partial-volume level's voxels."""
    from COMPASSLib.io import read_structures

    _, axial = ingested[0]
    path = tmp_path / "labels.nrrd"
    sitk.WriteImage(_labelmap(axial), str(path))
    for degrees in (10, 25, 45):
        grid = _grid(degrees)
        masks = read_structures([path], grid)
        for label, organ in (("label_1", "SpinalCord"), ("label_2", "Heart"), ("label_3", "Esophagus")):
            assert _cc(masks[label]) == pytest.approx(_cc(axial[organ]), rel=0.03), (organ, degrees)
        fraction = sitk.Resample(sitk.Cast(axial["Heart"], sitk.sitkFloat32), grid, sitk.Transform(),
                                 sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(masks["label_2"]),
                                      sitk.GetArrayFromImage(fraction) >= 0.5, err_msg=f"Heart {degrees}")


def test_labelmap_on_an_axis_aligned_grid_is_unchanged(ingested):
    _, axial = ingested[0]
    coarse = sitk.Image([N // 2, N // 2, SLICES], sitk.sitkUInt8)
    coarse.SetSpacing((4.0, 4.0, 3.0))
    coarse.SetOrigin((-88.0, -88.0, 0.0))
    out = resample_mask(axial["SpinalCord"], coarse)
    fraction = sitk.Resample(sitk.Cast(axial["SpinalCord"], sitk.sitkFloat32), coarse, sitk.Transform(),
                             sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(fraction) >= 0.5)


# --------------------------------------------------------------------------- the selection itself

def test_volume_preserving_mask_counts_and_order():
    fraction = np.zeros((4, 3, 3))
    fraction[:, 1, 1] = 1.0
    fraction[:, 0, 1] = 0.6
    fraction[:, 2, 1] = 0.4
    fraction[:, 1, 0] = 0.3          # 2.3 per slice, 9.2 in all
    mask = volume_preserving_mask(fraction)
    assert mask.sum() == 9                                    # round(9.2), not 4 x round(2.3) = 8
    assert [int(m.sum()) for m in mask] == [2, 3, 2, 2]       # running sums 2.3, 4.6, 6.9, 9.2 rounded
    assert mask[:, 1, 1].all() and mask[:, 0, 1].all()        # the largest fractions first
    assert not mask[:, 1, 0].any() or mask[:, 2, 1].all()
    assert not volume_preserving_mask(np.zeros((2, 2, 2))).any()
