"""CT series -> float32 image in Hounsfield units (rescale slope/intercept applied per slice)."""
from __future__ import annotations

from COMPASSLib.io.dicom_series import read_series


def read_ct_series(files, patient=None, fraction=None):
    """Read a CT DICOM series (files in any order) -> `SimpleITK.Image` float32 HU, LPS geometry."""
    image, _ = read_series(files, "CT", patient=patient, fraction=fraction)
    return image
