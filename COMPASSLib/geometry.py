"""Reference grids and resampling. Everything is LPS; origin, spacing and direction of the reference
are copied exactly onto every resampled image (no physical-space round trip through numpy).

Masks are resampled so that small organs survive: a mask is resampled as a float fraction with
linear interpolation and thresholded at 0.5 (the partial-volume estimate, which neither grows nor
shrinks large organs). A thin or small organ (e.g. a spinal cord one voxel wide on a coarse dose
grid) can fall below 0.5 everywhere and vanish, and so can nearest neighbour, which only samples
the reference voxel centres. Then the mask falls back to the reference voxels that contain the organ's
voxel centres, keeping those holding at least half as many as the fullest one (the voxels of largest
overlap), so an organ that exists in the input always exists on the reference grid and a thin cord
stays a continuous line.

On a reference grid rotated against the mask's own (not a signed permutation of its axes, e.g. a CT
rotated about the patient's long axis), the 0.5 threshold of an organ a few voxels across that runs
along the slice normal repeats one lattice phase on every slice and can lose half of it (a 1 cm cord
on a 3 mm grid rotated 45 degrees: -50 %). There, when the thresholded mask misses the partial-volume
estimate (the resampled fraction's sum) by more than THIN_VOLUME_TOLERANCE, the mask is rebuilt with
`volume_preserving_mask`. Axis-aligned resampling is never changed by this. RTSTRUCT contours are
rasterised on the reference grid directly and get the same rule (io/rtstruct.py).
"""
from __future__ import annotations

import logging

import numpy as np

from COMPASSLib.errors import GeometryError

log = logging.getLogger(__name__)

FRAME_KEY = "FrameOfReferenceUID"

# A mask whose volume misses its partial-volume estimate by more than this on a rotated grid is rebuilt to
# hold that volume (module docstring); within it the usual mask is kept voxel for voxel. At 3 % body, lungs
# and heart keep theirs at any angle (within 0.6 % on the synthetic thorax at 10-45 degrees); a cord, and
# at some angles an esophagus (-4 % and +4 % seen), are rebuilt.
THIN_VOLUME_TOLERANCE = 0.03


def _sitk():
    import SimpleITK as sitk

    return sitk


def is_image(x) -> bool:
    """True for a SimpleITK image (without importing SimpleITK for plain arrays)."""
    return type(x).__module__.startswith("SimpleITK") and hasattr(x, "GetSpacing")


def like(values: np.ndarray, template, dtype=None):
    """`values` as the kind of `template`: an image on its grid when it is one (cast to `dtype` when
    given), else the array itself: functions that take arrays or images return what they were given."""
    return image_like(values, template, dtype) if is_image(template) else values


def image_like(values: np.ndarray, template, dtype=None):
    """A SimpleITK image of the (z, y, x) array `values` on `template`'s grid (origin, spacing,
    direction copied exactly); cast to `dtype` first when given."""
    sitk = _sitk()
    out = sitk.GetImageFromArray(values if dtype is None else values.astype(dtype))
    out.CopyInformation(template)
    return out


def same_grid(a, b, tol: float = 1e-4) -> bool:
    """True when two images share size, origin, spacing and direction (to `tol`, mm or cosine)."""
    if tuple(a.GetSize()) != tuple(b.GetSize()):
        return False
    return (np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=tol)
            and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=tol)
            and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=tol))


def reference_grid(image, frame_of_reference_uid: str | None = None):
    """An empty uint8 image with `image`'s exact geometry: a light stand-in for "the grid" that
    carries the frame of reference (metadata FrameOfReferenceUID) for RTSTRUCT checks."""
    sitk = _sitk()
    grid = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    grid.CopyInformation(image)
    # The image's own frame wins; the caller's (e.g. the manifest's) only fills in a missing one.
    frame = (image.GetMetaData(FRAME_KEY) if image.HasMetaDataKey(FRAME_KEY) else "") or frame_of_reference_uid
    if frame:
        grid.SetMetaData(FRAME_KEY, frame)
    return grid


def _check_frames(image, reference, what):
    fa = image.GetMetaData(FRAME_KEY) if image.HasMetaDataKey(FRAME_KEY) else ""
    fb = reference.GetMetaData(FRAME_KEY) if reference.HasMetaDataKey(FRAME_KEY) else ""
    if fa and fb and fa != fb:
        raise GeometryError(f"cannot resample {what}: FrameOfReferenceUID {fa} differs from the reference's {fb} "
                            "(a registration would be needed)")


def _copy_metadata(source, target):
    for key in source.GetMetaDataKeys():
        target.SetMetaData(key, source.GetMetaData(key))
    return target


def resample_image(image, reference, default: float = 0.0, interpolator=None):
    """`image` on `reference`'s grid (linear by default), float32, metadata kept; voxels outside
    `image` get `default`. Returns a copy even when the grids already agree."""
    sitk = _sitk()
    _check_frames(image, reference, "image")
    if same_grid(image, reference):
        out = sitk.Cast(image, sitk.sitkFloat32)
        out.CopyInformation(reference)  # exact reference geometry, not the tolerated near-copy
    else:
        interp = sitk.sitkLinear if interpolator is None else interpolator
        out = sitk.Resample(image, reference, sitk.Transform(), interp, float(default), sitk.sitkFloat32)
    return _copy_metadata(image, out)


def axes_rotated(direction, other=None, tol: float = 1e-6) -> bool:
    """True when the grid axes of `direction` (9 cosines, row-major as SimpleITK gives them) are not a
    signed permutation of `other`'s (default: the patient axes), i.e. one grid is rotated against the
    other by an angle that is not a multiple of 90 degrees."""
    relative = np.abs(np.array(direction, float).reshape(3, 3))
    if other is not None:
        relative = np.abs(np.array(other, float).reshape(3, 3).T @ np.array(direction, float).reshape(3, 3))
    return not bool(np.all((relative < tol) | (relative > 1 - tol)))


def volume_preserving_mask(fraction) -> np.ndarray:
    """A bool (z, y, x) mask holding as many voxels as the partial-volume `fraction` (0..1, same shape)
    sums to: on each slice the voxels of largest fraction (ties in array order), the counts rounded on
    the running sum over the slices, so that the whole mask misses the sum by less than half a voxel
    (rounding each slice alone would repeat one error on every slice of a cord)."""
    f = np.asarray(fraction, dtype=np.float64)
    totals = np.rint(np.cumsum(f.reshape(f.shape[0], -1).sum(axis=1))).astype(np.int64)
    counts = np.diff(totals, prepend=0)
    out = np.zeros(f.shape, dtype=bool)
    for z in np.flatnonzero(counts > 0):
        flat = f[z].ravel()
        candidates = np.flatnonzero(flat > 0)   # ascending, so the stable sort keeps ties in array order
        chosen = np.zeros(flat.size, dtype=bool)
        chosen[candidates[np.argsort(-flat[candidates], kind="stable")[:int(counts[z])]]] = True
        out[z] = chosen.reshape(f.shape[1:])
    return out


def resample_mask(mask, reference):
    """A 0/1 mask on `reference`'s grid as uint8, keeping small organs (see module docstring)."""
    sitk = _sitk()
    _check_frames(mask, reference, "mask")
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8) if mask.GetPixelID() != sitk.sitkUInt8 else mask
    if same_grid(binary, reference):
        out = sitk.Image(binary)
        out.CopyInformation(reference)
        return out
    fraction = sitk.Resample(sitk.Cast(binary, sitk.sitkFloat32), reference, sitk.Transform(),
                             sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    out = sitk.Cast(fraction >= 0.5, sitk.sitkUInt8)
    source = sitk.GetArrayViewFromImage(binary)
    if not source.any():
        return out
    if axes_rotated(binary.GetDirection(), reference.GetDirection()):
        out = _thin_volume_kept(out, fraction)
    if sitk.GetArrayViewFromImage(out).any():
        return out
    log.debug("mask vanished at 0.5 partial volume; keeping the reference voxels that hold its voxels")
    return _voxels_holding(binary, reference)


def _thin_volume_kept(thresholded, fraction):
    """`thresholded` (fraction >= 0.5), or the volume-preserving mask of `fraction` when it misses the
    fraction's sum by more than THIN_VOLUME_TOLERANCE (resampling onto a rotated grid)."""
    sitk = _sitk()
    f = sitk.GetArrayViewFromImage(fraction)
    expected, count = float(f.sum(dtype=np.float64)), int(sitk.GetArrayViewFromImage(thresholded).sum())
    if expected == 0 or abs(count - expected) <= THIN_VOLUME_TOLERANCE * expected:
        return thresholded
    log.debug("mask holds %d voxels at 0.5 partial volume, %.1f by its fraction on this rotated grid; keeping "
              "the fraction's volume", count, expected)
    return image_like(volume_preserving_mask(np.clip(f, 0.0, 1.0)), fraction, np.uint8)


def _index_to_physical(image, index_xyz):
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return np.array(image.GetOrigin()) + (index_xyz * np.array(image.GetSpacing())) @ direction.T


def _voxels_holding(mask, reference):
    """Reference voxels that contain the centres of `mask`'s voxels, keeping those that hold at least
    half as many as the fullest one (the voxels of largest overlap; a thin organ keeps its course)."""
    sitk = _sitk()
    zyx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    points = _index_to_physical(mask, zyx[:, ::-1].astype(float))
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    index = np.rint(((points - np.array(reference.GetOrigin())) @ np.linalg.inv(direction).T)
                    / np.array(reference.GetSpacing())).astype(np.int64)
    size = np.array(reference.GetSize())
    index = index[np.all((index >= 0) & (index < size), axis=1)]
    counts = np.zeros(tuple(size[::-1]), dtype=np.int64)
    np.add.at(counts, (index[:, 2], index[:, 1], index[:, 0]), 1)
    keep = (counts > 0) & (counts * 2 >= counts.max()) if counts.any() else counts > 0
    out = sitk.GetImageFromArray(keep.astype(np.uint8))
    out.CopyInformation(reference)
    return out
