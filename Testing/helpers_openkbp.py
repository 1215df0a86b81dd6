"""Reader for the OpenKBP sparse-CSV patients in ../shared/data/openkbp (test helper only).

Format (OpenKBP data-description.pdf, ababier/open-kbp provided-data): every volume is a 128 x 128 x 128
grid stored sparsely as CSV with a header row and `flat_index,value` rows, flat_index in C order.
Dose values are Gy; structure files list only the indices inside the structure (empty value column);
CT values are HU + 1024. voxel_dimensions.csv holds three voxel sizes in mm.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (128, 128, 128)


def read_sparse(path, shape=SHAPE, fill_value: float = 1.0) -> np.ndarray:
    """Dense float64 array from a sparse OpenKBP CSV; rows without a value (structures) get `fill_value`."""
    import pandas as pd

    table = pd.read_csv(path, index_col=0)
    dense = np.zeros(int(np.prod(shape)), dtype=np.float64)
    values = table["data"].to_numpy(dtype=np.float64) if "data" in table else np.full(len(table), fill_value)
    values = np.where(np.isnan(values), fill_value, values)
    dense[table.index.to_numpy(dtype=np.int64)] = values
    return dense.reshape(shape)


def voxel_dimensions_mm(patient_dir) -> np.ndarray:
    return np.loadtxt(Path(patient_dir) / "voxel_dimensions.csv", dtype=np.float64)


def load(patient_dir, rois=("SpinalCord", "Esophagus")):
    """(dose_gy array, {roi: bool mask array}, voxel_dimensions_mm) for one OpenKBP patient folder."""
    patient_dir = Path(patient_dir)
    dose = read_sparse(patient_dir / "dose.csv")
    masks = {roi: read_sparse(patient_dir / f"{roi}.csv") > 0 for roi in rois}
    return dose, masks, voxel_dimensions_mm(patient_dir)
