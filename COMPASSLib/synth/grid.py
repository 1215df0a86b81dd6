"""The voxel grids of the synthetic cohort: one CT grid per patient (LPS, identity direction), a PET grid
made by block-averaging it, and helpers that give every voxel its physical coordinates."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from COMPASSLib.errors import InputError


@dataclass(frozen=True)
class Grid:
    """An axis-aligned LPS grid. Arrays on it are indexed (z, y, x) like `sitk.GetArrayFromImage`."""
    size: tuple          # (nx, ny, nz)
    spacing_mm: tuple    # (sx, sy, sz)
    origin_mm: tuple     # LPS centre of voxel (0, 0, 0)

    @property
    def shape(self) -> tuple:
        return (self.size[2], self.size[1], self.size[0])

    @property
    def voxel_cc(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    def axes(self):
        """1-D physical coordinates (x, y, z) in mm of the voxel centres."""
        return tuple(self.origin_mm[i] + self.spacing_mm[i] * np.arange(self.size[i]) for i in range(3))

    def mesh(self):
        """Broadcastable (z, y, x) coordinate arrays X, Y, Z (no full 3-D copies)."""
        x, y, z = self.axes()
        return x[None, None, :], y[None, :, None], z[:, None, None]

    def downsampled(self, factor_xy: int) -> "Grid":
        """The grid of `block_mean(array, factor_xy)`: coarser in x and y, same slices."""
        if factor_xy == 1:
            return self
        f = factor_xy
        size = (self.size[0] // f, self.size[1] // f, self.size[2])
        spacing = (self.spacing_mm[0] * f, self.spacing_mm[1] * f, self.spacing_mm[2])
        # The centre of a block of f voxels sits (f-1)/2 voxels after the first one.
        origin = (self.origin_mm[0] + (f - 1) / 2 * self.spacing_mm[0],
                  self.origin_mm[1] + (f - 1) / 2 * self.spacing_mm[1], self.origin_mm[2])
        return Grid(size, spacing, origin)

    def crop(self, zyx_slices) -> "Grid":
        """The sub-grid of `array[zyx_slices]`."""
        sz, sy, sx = zyx_slices
        start = (sx.start or 0, sy.start or 0, sz.start or 0)
        stop = (sx.stop, sy.stop, sz.stop)
        size = tuple(int(stop[i] - start[i]) for i in range(3))
        origin = tuple(self.origin_mm[i] + start[i] * self.spacing_mm[i] for i in range(3))
        return Grid(size, self.spacing_mm, origin)


def block_mean(array: np.ndarray, factor_xy: int) -> np.ndarray:
    """Average f x f blocks in-plane (what a coarser PET detector grid records of the same activity)."""
    if factor_xy == 1:
        return array
    f = factor_xy
    nz, ny, nx = array.shape
    a = array[:, : ny - ny % f, : nx - nx % f]
    return a.reshape(nz, ny // f, f, nx // f, f).mean(axis=(2, 4))


# size -> (CT grid (nx, ny, nz), spacing mm, PET in-plane block factor)
SIZES = {
    # Coarse grid for fast tests: 384 x 288 x 180 mm at 6 mm.
    "small": ((64, 48, 30), (6.0, 6.0, 6.0), 1),
    # Realistic thorax: 480 x 360 x 270 mm at 3 mm; PET at 6 mm in-plane like a clinical PET.
    "full": ((160, 120, 90), (3.0, 3.0, 3.0), 2),
}


def ct_grid(size: str) -> Grid:
    if size not in SIZES:
        raise InputError(f"unknown synthetic cohort size {size!r}; choose one of {', '.join(SIZES)}")
    n, sp, _ = SIZES[size]
    # Centre the field of view on the patient axis (x = y = 0) so the anatomy model works in mm.
    origin = tuple(-(n[i] - 1) / 2 * sp[i] for i in range(3))
    return Grid(n, sp, origin)


def pet_factor(size: str) -> int:
    return SIZES[size][2]
