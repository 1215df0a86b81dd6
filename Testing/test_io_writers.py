"""Round-trip tests of the COMPASS readers on files written by the small pydicom writers of
helpers_dicom.py (CT/PET series, RTDOSE, RTSTRUCT): what was written is what the readers return."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers_dicom import FRAME, write_rtdose, write_series


# ---------------------------------------------------------------------------------------------
# Round trips: what was written is what the readers return (values and exact geometry).

def test_ct_series_roundtrip_values_and_geometry(tmp_path):
    from COMPASSLib.io.ct import read_ct_series

    rng = np.random.default_rng(0)
    stored = rng.integers(0, 3000, size=(5, 6, 7)).astype(np.int16)
    files = write_series(tmp_path, stored, origin=(-10.0, 20.0, -30.0), spacing=(0.8, 0.9, 2.5),
                         slope=1.0, intercept=-1024.0)
    image = read_ct_series(files)
    assert image.GetSize() == (7, 6, 5)
    assert image.GetOrigin() == pytest.approx((-10.0, 20.0, -30.0))
    assert image.GetSpacing() == pytest.approx((0.8, 0.9, 2.5))
    assert image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), stored - 1024.0)
    assert image.GetMetaData("FrameOfReferenceUID") == FRAME


def test_ct_series_oblique_and_reversed_normal(tmp_path):
    """Sagittal-like orientation whose slice normal points to -x: slices must still be stacked
    in the normal's order and voxel (i,j,k) must land at origin + D @ (spacing * ijk)."""
    from COMPASSLib.io.ct import read_ct_series

    orientation = (0, 1, 0, 0, 0, -1)          # rows along +y, columns along -z -> normal = -x
    stored = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    files = write_series(tmp_path, stored, origin=(5.0, -2.0, 7.0), spacing=(1.5, 1.25, 3.0),
                         orientation=orientation)
    image = read_ct_series(files)
    d = np.array(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(d[:, 2], [-1, 0, 0], atol=1e-9)
    point = image.TransformIndexToPhysicalPoint((2, 3, 1))
    np.testing.assert_allclose(point, np.array([5.0, -2.0, 7.0]) + 2 * 1.5 * np.array([0, 1, 0])
                               + 3 * 1.25 * np.array([0, 0, -1]) + 1 * 3.0 * np.array([-1, 0, 0]), atol=1e-6)
    assert sitk.GetArrayFromImage(image)[1, 3, 2] == stored[1, 3, 2]


@pytest.mark.parametrize("absolute", [False, True])
def test_rtdose_roundtrip_relative_and_absolute_offsets(tmp_path, absolute):
    from COMPASSLib.io.rtdose import read_rtdose

    dose = np.linspace(0, 2.5, 4 * 5 * 6).reshape(4, 5, 6)
    path = write_rtdose(tmp_path / "rd.dcm", dose, origin=(1.0, 2.0, -15.0), absolute_offsets=absolute)
    image = read_rtdose(path)
    assert image.GetOrigin() == pytest.approx((1.0, 2.0, -15.0))
    assert image.GetSpacing() == pytest.approx((2.0, 2.0, 3.0))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), dose, atol=1e-4)
    assert image.GetMetaData("DoseUnits") == "GY"
    assert image.GetMetaData("DoseType") == "PHYSICAL"
    assert image.GetMetaData("DoseSummationType") == "FRACTION"
    assert image.GetMetaData("FrameOfReferenceUID") == FRAME


def test_rtdose_cgy_converted_to_gy(tmp_path):
    from COMPASSLib.io.rtdose import read_rtdose

    dose_cgy = np.full((2, 3, 3), 180.0)
    image = read_rtdose(write_rtdose(tmp_path / "rd.dcm", dose_cgy, units="CGY", scaling=0.01))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), 1.8, atol=1e-6)
    assert image.GetMetaData("SourceDoseUnits") == "CGY"
