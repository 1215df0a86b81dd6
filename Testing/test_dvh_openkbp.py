"""DVH metrics on real head-and-neck IMRT plans (OpenKBP pt_66, pt_187) equal a direct numpy computation
of the same definitions on the same arrays. OpenKBP gives masks, not contours: `dose.dvh` counts their
whole voxels (the supersample 1 case of `compass dvh`; supersampling needs contours, and the feature
table's DVHs always count whole voxels of the masks on the reference grid)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib import dose
from helpers_openkbp import load


def _d_cc_by_definition(values: np.ndarray, volume_cc: float, voxel_cc: float) -> float:
    """Largest dose D such that the volume receiving >= D is at least `volume_cc` (brute force over
    every distinct dose: no sorting or indexing shared with COMPASSLib)."""
    candidates = np.unique(values)
    received = (values[None, :] >= candidates[:, None]).sum(axis=1) * voxel_cc
    return float(candidates[received >= volume_cc - 1e-12].max())


@pytest.mark.parametrize("patient", ["pt_66", "pt_187"])
def test_openkbp_mean_and_d0_1cc(shared_data, patient):
    dose_gy, masks, voxel_mm = load(shared_data / "openkbp" / patient)
    voxel_cc = float(np.prod(voxel_mm)) / 1000.0
    image = sitk.GetImageFromArray(dose_gy.astype(np.float32))
    image.SetSpacing(tuple(float(v) for v in voxel_mm))
    for roi, mask in masks.items():
        values = dose_gy[mask].astype(np.float32).astype(np.float64)  # the image holds float32
        assert values.size > 50, f"{patient} {roi} too small to be meaningful"
        mask_img = sitk.GetImageFromArray(mask.astype(np.uint8))
        mask_img.CopyInformation(image)
        metrics = dose.dvh(image, mask_img).metrics()
        assert metrics["volume_cc"] == pytest.approx(values.size * voxel_cc, rel=1e-12)
        assert metrics["mean_gy"] == pytest.approx(values.mean(), rel=1e-9)
        assert metrics["max_gy"] == values.max()
        expected = _d_cc_by_definition(values, 0.1, voxel_cc)
        assert metrics["d0_1cc_gy"] == expected, f"{patient} {roi}"
        # plausibility against the plan: these are organs at risk next to a 70 Gy target
        assert 0 < metrics["mean_gy"] < metrics["d0_1cc_gy"] <= metrics["max_gy"] < 80
