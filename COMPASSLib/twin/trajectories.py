"""Feature table <-> padded trajectory arrays, and outcomes as labels.

A trajectory is one (patient, organ) pair: its feature rows ordered by fraction. Trajectories differ in
length (patients miss fractions, cohorts differ), so arrays are padded at the end and carry `lengths`;
the encoder is causal, so padding after the last fraction never reaches a valid state.
"""
from __future__ import annotations

import numpy as np

from COMPASSLib.errors import ModelError

ID_COLUMNS = ("patient", "organ", "fraction")


def check_table(table, what="feature table"):
    """Refuse tables without the id columns or with a (patient, organ, fraction) twice."""
    missing = [c for c in ID_COLUMNS if c not in table.columns]
    if missing:
        raise ModelError(f"{what} lacks column(s) {missing}")
    dup = table.duplicated(list(ID_COLUMNS))
    if dup.any():
        row = table[dup].iloc[0]
        raise ModelError(f"{what} has the same organ/fraction twice ({row['organ']})",
                         patient=row["patient"], fraction=int(row["fraction"]))


def numeric_feature_columns(table) -> list:
    """All numeric columns except the ids, in table order."""
    import pandas as pd

    return [c for c in table.columns
            if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(table[c]) and table[c].dtype != bool]


def labels_frame(outcomes):
    """Outcomes (list of cohort.Outcome, or a DataFrame with patient, organ, grade[, onset_fraction])
    -> DataFrame patient, organ, label (grade >= 1 as 0/1), onset_fraction (float, NaN when none)."""
    import pandas as pd

    if isinstance(outcomes, pd.DataFrame):
        df = outcomes.copy()
        if "label" not in df.columns:
            if "grade" not in df.columns:
                raise ModelError("outcomes need a 'grade' or 'label' column")
            df["label"] = (df["grade"].astype(float) >= 1).astype(int)
        if "onset_fraction" not in df.columns:
            df["onset_fraction"] = np.nan
    else:
        df = pd.DataFrame([{"patient": o.patient, "organ": o.organ, "label": int(o.toxic),
                            "onset_fraction": np.nan if o.onset_fraction is None else o.onset_fraction}
                           for o in outcomes], columns=["patient", "organ", "label", "onset_fraction"])
    df["patient"] = df["patient"].astype(str)
    df["organ"] = df["organ"].astype(str)
    df["onset_fraction"] = pd.to_numeric(df["onset_fraction"], errors="coerce").astype(float)
    df = df[["patient", "organ", "label", "onset_fraction"]].drop_duplicates(["patient", "organ"], keep="last")
    return df.reset_index(drop=True)


def trajectory_keys(table) -> list:
    """Sorted (patient, organ) pairs present in the table."""
    pairs = table[["patient", "organ"]].astype(str).drop_duplicates()
    return sorted(map(tuple, pairs.to_numpy()))


def to_arrays(table, columns, keys):
    """Padded arrays for `keys`: X (N, T, F) float32 with NaN where missing, lengths (N,),
    fractions (N, T) int (0 = padding)."""
    t = table.assign(patient=table["patient"].astype(str), organ=table["organ"].astype(str))
    groups = {k: g.sort_values("fraction") for k, g in t.groupby(["patient", "organ"], sort=False)}
    lengths = np.array([len(groups[k]) for k in keys], dtype=np.int64)
    n_steps = int(lengths.max()) if len(keys) else 0
    X = np.full((len(keys), n_steps, len(columns)), np.nan, dtype=np.float32)
    fractions = np.zeros((len(keys), n_steps), dtype=np.int64)
    for i, k in enumerate(keys):
        g = groups[k]
        X[i, : len(g)] = g[columns].to_numpy(dtype=np.float32, na_value=np.nan)
        fractions[i, : len(g)] = g["fraction"].to_numpy(dtype=np.int64)
    return X, lengths, fractions
