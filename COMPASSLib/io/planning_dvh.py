"""The planning system's own DVHs, as an RTDOSE's DVHSequence (3004,0050) carries them.

Each item: DVHType (CUMULATIVE or DIFFERENTIAL; NATURAL is not read), DoseUnits (GY, CGY; RELATIVE is not
read: it needs a normalisation the file may not say), DVHDoseScaling (multiplies the bin widths),
DVHVolumeUnits (CM3 or PERCENT), DVHData (bin width, volume pairs), DVHReferencedROISequence (the ROI
number of the RTSTRUCT). An item COMPASS cannot read is reported with the reason, not silently dropped.

Where a cumulative bin's value holds. DICOM leaves it to the writer; COMPASS reads it at the bin's lower
edge plus half a bin. The evidence is the one planning-system export at hand, the dicompyler example
(Varian Eclipse; ../shared/data/dicompyler_example): its own DVHMeanDose equals the mean of the bins
taken that way (Heart 0.6476 vs 0.6477 Gy, Tumor Bed 14.2907 vs 14.2908 Gy; at the lower edges 0.6427 and
14.2858), and so do the curves of its two large ROIs (Heart 0.53 and Lt Lung 0.28 volume-% points from
COMPASS's whole-voxel DVH at half a bin, 3.47 and 1.71 at the lower edge). A differential bin's volume is
what received a dose inside the bin, so the cumulative curve built from it holds at the lower edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from COMPASSLib.errors import InputError
from COMPASSLib.io.dicom_series import (check_modality, dicom_number, dicom_numbers, element_value, read_dataset,
                                        sequence_items)

_TO_GY = {"GY": 1.0, "CGY": 0.01}


@dataclass(frozen=True)
class PlanningDVH:
    """One ROI's planning-system DVH as a cumulative curve: at `dose_gy[i]` the ROI's volume receiving at
    least that dose is `volume_pct[i]` % of the ROI (non-increasing). `volume_cc` is the ROI volume the
    planning system reports (None when its volumes are in percent)."""
    roi_number: int
    dose_gy: np.ndarray
    volume_pct: np.ndarray
    volume_cc: float | None
    dvh_type: str


def read_planning_dvhs(path, patient=None, fraction=None) -> tuple[dict, dict]:
    """({ROI number: PlanningDVH}, {ROI number or 'item k': why it was not read}) from an RTDOSE file.
    An RTDOSE without a DVHSequence gives two empty dicts."""
    ds = read_dataset(path, stop_before_pixels=True, patient=patient, fraction=fraction)
    check_modality(ds, "RTDOSE", path, patient, fraction)
    where = dict(path=path, patient=patient, fraction=fraction)
    curves, skipped = {}, {}
    for k, item in enumerate(sequence_items(ds, "DVHSequence", what="DVHSequence", **where), start=1):
        refs = sequence_items(item, "DVHReferencedROISequence", what=f"DVHSequence item {k}", **where)
        if not refs:
            skipped[f"item {k}"] = "no DVHReferencedROISequence (which ROI it is is not said)"
            continue
        number = int(dicom_number(refs[0], "ReferencedROINumber", integer=True, **where))
        try:
            curves[number] = _curve(item, number, where)
        except _Unread as why:
            skipped[number] = str(why)
    return curves, skipped


class _Unread(Exception):
    """A DVH item that is valid DICOM but not one COMPASS compares against (the reason is reported)."""


def _curve(item, number, where) -> PlanningDVH:
    dvh_type = str(element_value(item, "DVHType", default="", **where) or "").strip().upper()
    units = str(element_value(item, "DoseUnits", default="", **where) or "").strip().upper()
    volume_units = str(element_value(item, "DVHVolumeUnits", default="", **where) or "").strip().upper()
    if dvh_type not in ("CUMULATIVE", "DIFFERENTIAL"):
        raise _Unread(f"DVHType {dvh_type or '(empty)'} (reads CUMULATIVE and DIFFERENTIAL)")
    if units not in _TO_GY:
        raise _Unread(f"DoseUnits {units or '(empty)'} (reads GY and CGY)")
    if volume_units not in ("CM3", "PERCENT"):
        raise _Unread(f"DVHVolumeUnits {volume_units or '(empty)'} (reads CM3 and PERCENT)")
    data = dicom_numbers(item, "DVHData", None, **where)
    if data.size < 2 or data.size % 2:
        raise InputError(f"DVHData of ROI {number} holds {data.size} values, not (width, volume) pairs",
                         file=where["path"], patient=where["patient"], fraction=where["fraction"])
    scaling = dicom_number(item, "DVHDoseScaling", default=1.0, positive=True, **where)
    widths = data[0::2] * scaling * _TO_GY[units]
    volumes = data[1::2]
    # Exporters leave round-off below zero where the curve reaches 0 (Eclipse: -3e-13 cc); clipped.
    if (widths < 0).any() or (volumes < -1e-9 * max(float(np.abs(volumes).max()), 1e-12)).any():
        raise InputError(f"DVHData of ROI {number} holds negative bin widths or volumes",
                         file=where["path"], patient=where["patient"], fraction=where["fraction"])
    volumes = np.maximum(volumes, 0.0)
    edges = np.r_[0.0, np.cumsum(widths)][:-1]
    if dvh_type == "CUMULATIVE":
        at, cumulative = edges + widths / 2, volumes
    else:
        at, cumulative = edges, np.cumsum(volumes[::-1])[::-1]
    total = float(cumulative[0])
    if not total > 0:
        raise _Unread("its DVH holds no volume")
    return PlanningDVH(number, at, 100.0 * cumulative / total, total if volume_units == "CM3" else None, dvh_type)
