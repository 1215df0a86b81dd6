"""Reference grids and resampling: exact geometry, linear values, masks that keep small organs."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib.geometry import reference_grid, resample_image, resample_mask, same_grid


def _image(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None, frame=None):
    img = sitk.GetImageFromArray(np.asarray(array))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction:
        img.SetDirection(direction)
    if frame:
        img.SetMetaData("FrameOfReferenceUID", frame)
    return img


def test_same_grid_tolerance():
    a = _image(np.zeros((3, 4, 5)), origin=(1.0, 2.0, 3.0))
    b = _image(np.zeros((3, 4, 5)), origin=(1.0, 2.0, 3.00005))
    c = _image(np.zeros((3, 4, 5)), origin=(1.0, 2.0, 3.01))
    assert same_grid(a, b) and not same_grid(a, c) and same_grid(a, c, tol=0.02)
    assert not same_grid(a, _image(np.zeros((3, 4, 6)), origin=(1.0, 2.0, 3.0)))


def test_reference_grid_copies_geometry_and_frame():
    ct = _image(np.zeros((3, 4, 5), np.float32), spacing=(0.7, 0.8, 2.5), origin=(-3, 4, 9),
                direction=(0, 1, 0, -1, 0, 0, 0, 0, 1), frame="1.2.3")
    grid = reference_grid(ct)
    assert same_grid(grid, ct, tol=0) and grid.GetMetaData("FrameOfReferenceUID") == "1.2.3"
    assert reference_grid(_image(np.zeros((2, 2, 2))), "9.8").GetMetaData("FrameOfReferenceUID") == "9.8"


def test_resample_linear_dose_on_finer_grid_is_exact_for_a_ramp():
    """Linear interpolation reproduces a linear dose ramp exactly; geometry is the reference's."""
    z, y, x = np.mgrid[0:5, 0:6, 0:7]
    dose = _image((0.5 * x + 0.25 * y + 0.1 * z).astype(np.float32), spacing=(2.0, 2.0, 3.0), origin=(10, 20, 30))
    ref = _image(np.zeros((8, 9, 11), np.float32), spacing=(1.0, 1.0, 1.5), origin=(11.3, 21.0, 31.0),
                 frame="1.2")
    out = resample_image(dose, ref)
    assert out.GetOrigin() == ref.GetOrigin() and out.GetSpacing() == ref.GetSpacing()
    assert out.GetDirection() == ref.GetDirection() and out.GetPixelID() == sitk.sitkFloat32
    zz, yy, xx = np.mgrid[0:8, 0:9, 0:11]
    px, py, pz = 11.3 + xx * 1.0, 21.0 + yy * 1.0, 31.0 + zz * 1.5
    expected = 0.5 * (px - 10) / 2 + 0.25 * (py - 20) / 2 + 0.1 * (pz - 30) / 3
    np.testing.assert_allclose(sitk.GetArrayFromImage(out), expected, atol=1e-5)


def test_resample_outside_gets_default():
    img = _image(np.ones((2, 2, 2), np.float32))
    ref = _image(np.zeros((2, 2, 4), np.float32), origin=(0, 0, 0))
    out = sitk.GetArrayFromImage(resample_image(img, ref, default=-1000.0))
    assert out[0, 0, 0] == 1.0 and out[0, 0, 3] == -1000.0


def test_large_mask_volume_kept():
    """A 20 mm sphere from a 1 mm grid onto a 2.5 mm grid keeps its volume (partial-volume 0.5)."""
    z, y, x = np.mgrid[0:60, 0:60, 0:60]
    sphere = ((x - 30) ** 2 + (y - 30) ** 2 + (z - 30) ** 2 <= 20 ** 2).astype(np.uint8)
    fine = _image(sphere)
    coarse = _image(np.zeros((24, 24, 24), np.uint8), spacing=(2.5, 2.5, 2.5), origin=(0.75, 0.75, 0.75))
    out = resample_mask(fine, coarse)
    volume = sitk.GetArrayFromImage(out).sum() * 2.5 ** 3
    assert out.GetPixelID() == sitk.sitkUInt8
    assert volume == pytest.approx(4 / 3 * np.pi * 20 ** 3, rel=0.03)


def test_thin_organ_survives_coarse_grid():
    """A 1 mm wide cord on a 5 mm grid falls below 0.5 partial volume everywhere; it must not vanish."""
    cord = np.zeros((20, 20, 20), np.uint8)
    cord[:, 10, 10] = 1
    out = resample_mask(_image(cord), _image(np.zeros((4, 4, 4), np.uint8), spacing=(5, 5, 5), origin=(2, 2, 2)))
    out = sitk.GetArrayFromImage(out)
    # x = y = 10 mm lies in the coarse voxel centred on 12 mm (index 2): a continuous line along z
    assert out.sum() == 4 and out[:, 2, 2].tolist() == [1, 1, 1, 1]


def test_tiny_organ_between_voxel_centres_keeps_one_voxel():
    """A single 1 mm voxel that no coarse voxel centre falls near: kept as the voxel of largest overlap."""
    tiny = np.zeros((10, 10, 10), np.uint8)
    tiny[4, 4, 4] = 1
    ref = _image(np.zeros((3, 3, 3), np.uint8), spacing=(4, 4, 4), origin=(0, 0, 0))
    out = sitk.GetArrayFromImage(resample_mask(_image(tiny), ref))
    assert out.sum() == 1 and out[1, 1, 1] == 1


def test_mask_outside_reference_stays_empty():
    m = np.zeros((4, 4, 4), np.uint8)
    m[1, 1, 1] = 1
    ref = _image(np.zeros((2, 2, 2), np.uint8), origin=(100, 100, 100))
    assert sitk.GetArrayFromImage(resample_mask(_image(m), ref)).sum() == 0


def test_same_grid_mask_is_copied_exactly():
    m = (np.random.default_rng(1).random((5, 6, 7)) > 0.5).astype(np.uint8)
    out = resample_mask(_image(m), _image(np.zeros((5, 6, 7), np.float32)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), m)
