"""Labelmap -> RTSTRUCT contours: per slice, closed polygons through the half-way points between
inside and outside voxel centres (marching squares at level 0.5), so that rasterising them again by
voxel-centre inclusion gives back exactly the voxels of the mask."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_fill_holes
from skimage.measure import find_contours

from COMPASSLib.synth.grid import Grid


# In-plane 4-connectivity only: holes are filled slice by slice, in one call.
_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


def fill_slice_holes(mask: np.ndarray) -> np.ndarray:
    """Clinical contours of these organs have no holes; filling them per slice keeps polygons simple."""
    return binary_fill_holes(mask, structure=_IN_PLANE)


def slice_polygons(mask2d: np.ndarray) -> list:
    """Closed polygons of one slice as (row, col) float arrays, last point not repeated."""
    if not mask2d.any():
        return []
    # Pad so organs touching the edge of the field of view still give closed contours.
    padded = np.pad(mask2d.astype(np.float32), 1)
    out = []
    for c in find_contours(padded, 0.5):
        c = c[:-1] - 1.0 if np.allclose(c[0], c[-1]) else c - 1.0
        if len(c) >= 3:
            out.append(c)
    return out


def mask_contours(mask: np.ndarray, grid: Grid) -> list:
    """All contours of a mask as (slice index, N x 3 LPS points in mm)."""
    x0, y0, _ = grid.origin_mm
    sx, sy, _ = grid.spacing_mm
    z = grid.axes()[2]
    out = []
    for k in range(mask.shape[0]):
        for rc in slice_polygons(mask[k]):
            pts = np.column_stack([x0 + rc[:, 1] * sx, y0 + rc[:, 0] * sy, np.full(len(rc), z[k])])
            out.append((k, pts))
    return out
