"""One fraction's dose is one fraction's physical dose: what a cohort's per-fraction dose (and each input of
`compass bed`) must be before it enters the BED, which squares it (docs/input_checks.md "One fraction's dose",
the accepted values and bounds with their sources in Resources/fraction_dose.yaml)."""
from __future__ import annotations

import numpy as np

from COMPASSLib.errors import DoseError
from COMPASSLib.geometry import is_image
from COMPASSLib.resources import load_yaml


def check_fraction_dose(image, file=None, patient=None, fraction=None) -> None:
    """Refuse (DoseError naming file, patient, fraction and what is wrong) a dose that cannot be ONE
    fraction's physical dose: a plan/course summation, an effective (BED/EQD2) or error dose, or a
    hottest voxel beyond what one fraction delivers (Resources/fraction_dose.yaml, with the reasons)."""
    import SimpleITK as sitk

    limits = load_yaml("fraction_dose.yaml")
    where = dict(file=file, patient=patient, fraction=fraction)
    meta = (lambda k: image.GetMetaData(k).strip().upper() if image.HasMetaDataKey(k) else "") \
        if is_image(image) else (lambda k: "")
    values = sitk.GetArrayViewFromImage(image) if is_image(image) else np.asarray(image)
    summation, dose_type = meta("DoseSummationType"), meta("DoseType")
    if summation and summation not in limits["summation_types"]:
        raise DoseError(f"DoseSummationType {summation} is not one fraction's dose (a whole plan or record "
                        "summed): give the dose delivered in this fraction (Resources/fraction_dose.yaml)", **where)
    if dose_type and dose_type not in limits["dose_types"]:
        raise DoseError(f"DoseType {dose_type} is not a physical dose (EFFECTIVE: a BED/EQD2 map; ERROR: a dose "
                        "difference): give the physical dose of the fraction", **where)
    kind = "brachy" if summation.startswith("BRACHY") else "external"
    highest = float(np.max(values)) if values.size else 0.0
    if highest > float(limits["max_gy"][kind]):
        label = {"brachy": "brachytherapy", "external": "external-beam"}[kind]
        raise DoseError(f"the fraction's hottest voxel is {highest:.4g} Gy, above the {limits['max_gy'][kind]} Gy "
                        f"one {label} fraction delivers at most (a course dose, or cGy stored as Gy?; "
                        "Resources/fraction_dose.yaml)", **where)
