"""LPS <-> RAS: the one coordinate conversion of the project.

COMPASSLib images are SimpleITK images in LPS (DICOM patient coordinates); Slicer's world is RAS.
RAS = diag(-1, -1, 1) * LPS, applied to the direction cosines and the origin; voxel order and spacing
are unchanged. Nothing outside this module flips axes.
"""
from __future__ import annotations

import numpy as np

from COMPASSLib.mrml.scene import _slicer

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras(image) -> np.ndarray:
    """4x4 IJK->RAS matrix of a SimpleITK image (LPS): direction and origin flipped in x and y."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    m[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return m


def _vtk_matrix(m):
    return _slicer().util.vtkMatrixFromArray(np.asarray(m, dtype=float))


def node_ijk_to_ras(volume_node) -> np.ndarray:
    import vtk

    vm = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(vm)
    return _slicer().util.arrayFromVTKMatrix(vm)


def volume_to_image(volume_node):
    """A volume node back as a SimpleITK image in LPS (the inverse of `add_volume`)."""
    import SimpleITK as sitk

    slicer = _slicer()
    m = node_ijk_to_ras(volume_node)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.array(slicer.util.arrayFromVolume(volume_node)))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in (LPS_TO_RAS @ m[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in LPS_TO_RAS @ m[:3, 3]))
    return image


def _array(image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)   # (z, y, x) = Slicer's (k, j, i)
