"""PET uptake inside an organ: SUVmean, SUVmax, SUVpeak (SUVbw).

SUVpeak follows the IBSI "global intensity peak" (IBSI-1, tag loc_peak_glob): for every voxel of the
organ, the mean SUV of all image voxels whose centres lie within a sphere of 1 cm^3 (radius 6.2035 mm)
centred on it -- voxels outside the organ count, voxels outside the image do not -- and the maximum of
these means over the organ. Tested against the IBSI digital-phantom reference value.
"""
from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

PEAK_VOLUME_CC = 1.0
PET_COLUMNS = ("pet_suv_mean", "pet_suv_max", "pet_suv_peak")


def _sphere_kernel(spacing_xyz, volume_cc: float) -> np.ndarray:
    radius_mm = (3.0 * volume_cc * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    sx, sy, sz = spacing_xyz
    half = [int(math.floor(radius_mm / s)) for s in (sz, sy, sx)]
    z, y, x = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    # a small tolerance so a voxel centre exactly on the sphere counts (IBSI: "within")
    return ((z * sz) ** 2 + (y * sy) ** 2 + (x * sx) ** 2 <= radius_mm ** 2 * (1 + 1e-9)).astype(np.float64)


def suv_peak(pet: sitk.Image, mask: sitk.Image, volume_cc: float = PEAK_VOLUME_CC) -> float:
    from scipy import ndimage

    inside = sitk.GetArrayViewFromImage(mask) > 0
    if not inside.any():
        return math.nan
    kernel = _sphere_kernel(pet.GetSpacing(), volume_cc)
    # work on the organ's bounding box grown by the sphere: same result, a fraction of the cost
    nz = np.nonzero(inside)
    box = tuple(slice(max(int(i.min()) - h, 0), int(i.max()) + h + 1) for i, h in zip(nz, np.array(kernel.shape) // 2))
    values = sitk.GetArrayViewFromImage(pet)[box].astype(np.float64)
    inside = inside[box]
    # mean over the voxels that exist: sum / count, both with zero padding outside the image
    sums = ndimage.correlate(values, kernel, mode="constant", cval=0.0)
    counts = ndimage.correlate(np.ones_like(values), kernel, mode="constant", cval=0.0)
    return float((sums[inside] / counts[inside]).max())


def suv_features(pet: sitk.Image, mask: sitk.Image) -> dict:
    values = sitk.GetArrayViewFromImage(pet)[sitk.GetArrayViewFromImage(mask) > 0]
    if values.size == 0:
        return {c: math.nan for c in PET_COLUMNS}
    return {"pet_suv_mean": float(values.mean(dtype=np.float64)), "pet_suv_max": float(values.max()),
            "pet_suv_peak": suv_peak(pet, mask)}
