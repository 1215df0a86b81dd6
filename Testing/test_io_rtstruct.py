"""RTSTRUCT rasterisation rules on contours whose voxel counts can be worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib.errors import GeometryError
from COMPASSLib.io.rtstruct import read_rtstruct
from helpers_dicom import FRAME, square, write_rtstruct


def _grid(size=(32, 32, 12), spacing=(1.0, 1.0, 3.0), origin=(0.0, 0.0, 0.0), direction=None):
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(spacing)
    grid.SetOrigin(origin)
    if direction is not None:
        grid.SetDirection(direction)
    grid.SetMetaData("FrameOfReferenceUID", FRAME)
    return grid


def _mask(tmp_path, rois, grid, name):
    return sitk.GetArrayFromImage(read_rtstruct(write_rtstruct(tmp_path / "RS.dcm", rois), grid)[name])


def test_square_counts_voxel_centres_inside(tmp_path):
    # half-width 10.5 mm around x=y=16: centres 6..26 -> 21 x 21 voxels, on planes z=3,6 (slices 1,2)
    mask = _mask(tmp_path, {"Box": [square(16, 16, 3.0, 10.5), square(16, 16, 6.0, 10.5)]}, _grid(), "Box")
    assert mask.sum() == 2 * 21 * 21
    assert mask[1].sum() == 441 and mask[2].sum() == 441 and mask[0].sum() == 0
    assert mask[1, 6, 6] == 1 and mask[1, 5, 6] == 0 and mask[1, 26, 26] == 1 and mask[1, 27, 26] == 0


def test_inner_contour_is_a_hole(tmp_path):
    # even-odd: 21 x 21 outer minus 9 x 9 inner (half-width 4.5)
    mask = _mask(tmp_path, {"Ring": [square(16, 16, 3.0, 10.5), square(16, 16, 3.0, 4.5)]}, _grid(), "Ring")
    assert mask.sum() == 441 - 81
    assert mask[1, 16, 16] == 0


def test_contour_partly_outside_grid_is_clipped(tmp_path):
    # centred on the grid corner (0, 0): only the quadrant x, y in 0..5 lies in the grid
    mask = _mask(tmp_path, {"Corner": [square(0, 0, 3.0, 5.5)]}, _grid(), "Corner")
    assert mask.sum() == 6 * 6


def test_contour_plane_matched_to_nearest_slice(tmp_path):
    # plane at z = 7.4 mm is nearest slice 2 (6 mm), within half a slice (1.5 mm)
    mask = _mask(tmp_path, {"Box": [square(16, 16, 7.4, 3.5)]}, _grid(), "Box")
    assert mask[2].sum() == 49 and mask.sum() == 49


def test_contours_coarser_than_grid_fill_their_slab(tmp_path):
    """Contours every 3 mm on a 1 mm grid: each plane stands for a 3 mm slab (dicompyler's
    thickness), so slices 2..10 (planes 3, 6, 9 mm +- 1.5 mm) are filled, without gaps."""
    grid = _grid(size=(32, 32, 14), spacing=(1.0, 1.0, 1.0))
    mask = _mask(tmp_path, {"Box": [square(16, 16, z, 3.5) for z in (3.0, 6.0, 9.0)]}, grid, "Box")
    filled = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    assert filled.tolist() == list(range(2, 11))
    # same volume as the contours describe: 3 planes x 3 mm x 49 mm^2
    assert mask.sum() * 1.0 == pytest.approx(3 * 3 * 49)


def test_rotated_reference_grid(tmp_path):
    """A grid rotated 90 degrees in-plane (rows along -x): the square lands on the same voxels
    in physical space."""
    direction = (0, -1, 0, 1, 0, 0, 0, 0, 1)        # column index i along +y, row index j along -x
    grid = _grid(origin=(31.0, 0.0, 0.0), direction=direction)
    mask = _mask(tmp_path, {"Box": [square(10, 20, 3.0, 2.5)]}, grid, "Box")
    assert mask.sum() == 25
    z, j, i = np.argwhere(mask)[0]
    x, y, _ = grid.TransformIndexToPhysicalPoint((int(i), int(j), int(z)))
    assert 7.5 <= x <= 12.5 and 17.5 <= y <= 22.5


def test_contour_not_parallel_to_grid(tmp_path):
    tilted = np.array([[10, 10, 0.0], [20, 10, 6.0], [20, 20, 6.0], [10, 20, 0.0]])
    with pytest.raises(GeometryError, match="not parallel"):
        read_rtstruct(write_rtstruct(tmp_path / "RS.dcm", {"Tilt": [tilted]}), _grid())


def test_scanline_equals_matplotlib_point_in_polygon():
    """The in-plane test selects exactly the voxels matplotlib's Path.contains_points selects (the
    test dicompyler-core uses), on random self-intersecting star polygons partly off the grid."""
    from matplotlib.path import Path

    from COMPASSLib.io.rtstruct import _polygon_mask

    rng = np.random.default_rng(7)
    shape = (40, 50)
    jj, ii = np.mgrid[0:shape[0], 0:shape[1]]
    centres = np.column_stack([ii.ravel(), jj.ravel()])
    for _ in range(30):
        n = int(rng.integers(3, 40))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n)) if rng.random() < 0.5 else rng.uniform(0, 2 * np.pi, n)
        radius = rng.uniform(2, 30, n)
        centre = rng.uniform(-10, 60, 2)
        polygon = np.column_stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)])
        expected = Path(polygon).contains_points(centres).reshape(shape)
        ours = _polygon_mask(polygon, shape)
        ours = np.zeros(shape, bool) if ours is None else ours
        assert (ours != expected).sum() == 0
