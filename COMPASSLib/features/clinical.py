"""Per-fraction clinical data (blood counts, patient-reported symptoms, biomarkers) joined into the
feature table as `clin_<column>` by patient and fraction.

The CSV needs columns `patient` and `fraction` (1-based, as in the cohort); every other column becomes
`clin_<name>` (name lower-cased, non-alphanumerics as '_'; a name already starting with clin_ is kept).
Rows for patient/fraction pairs not in the feature table are ignored; missing pairs give NaN. A CSV that
names none of the table's patients is an InputError (every clin_ column would be NaN).
"""
from __future__ import annotations

import re
from pathlib import Path

from COMPASSLib.errors import InputError


def clinical_column(name: str) -> str:
    s = re.sub(r"[^0-9a-zA-Z]+", "_", str(name).strip()).strip("_").lower()
    return s if s.startswith("clin_") else f"clin_{s}"


def read_clinical(path):
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"patient": str})
    except FileNotFoundError:
        raise InputError("clinical CSV not found", file=path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"clinical CSV unreadable: {e}", file=path) from None
    missing = {"patient", "fraction"} - set(df.columns)
    if missing:
        raise InputError(f"clinical CSV lacks column(s) {sorted(missing)}", file=path)
    fr = pd.to_numeric(df["fraction"], errors="coerce")
    bad = fr.isna() | (fr != fr.round())
    if bad.any():
        line = int(bad.idxmax()) + 2
        raise InputError(f"clinical CSV line {line}: fraction is not an integer", file=path,
                         patient=df.loc[bad.idxmax(), "patient"])
    df["fraction"] = fr.astype(int)
    df["patient"] = df["patient"].str.strip()
    dup = df.duplicated(["patient", "fraction"])
    if dup.any():
        row = df[dup].iloc[0]
        raise InputError("clinical CSV has more than one row for a patient and fraction", file=path,
                         patient=row["patient"], fraction=int(row["fraction"]))
    renamed = {c: clinical_column(c) for c in df.columns if c not in ("patient", "fraction")}
    if len(set(renamed.values())) != len(renamed):
        raise InputError("clinical CSV column names collide after normalising to clin_*", file=path)
    return df.rename(columns=renamed)


def join_clinical(table, clinical_csv):
    """Left join: every feature row is kept; clin_* columns appended."""
    clin = read_clinical(clinical_csv)
    clash = [c for c in clin.columns if c in table.columns and c not in ("patient", "fraction")]
    if clash:
        raise InputError(f"clinical columns {clash} already in the feature table", file=clinical_csv)
    _check_patients(table, clin, clinical_csv)
    return table.merge(clin, on=["patient", "fraction"], how="left", validate="many_to_one")


def _check_patients(table, clin, path) -> None:
    """A clinical CSV that names none of the table's patients (another id scheme, another study's file, a
    typo in every id) would give every clin_ column NaN without a word: InputError naming its ids and the
    closest one to each patient of the table. Rows of patients outside the table are fine otherwise."""
    import difflib

    ours, theirs = sorted(set(table["patient"].astype(str))), sorted(set(clin["patient"].dropna().astype(str)))
    if not ours or set(ours) & set(theirs):
        return
    closest = "; ".join(f"{p}: {(difflib.get_close_matches(p, theirs, n=1, cutoff=0.0) or ['-'])[0]!r}"
                        for p in ours[:5])
    raise InputError(f"clinical CSV names none of the feature table's patients ({', '.join(ours[:5])}); it has "
                     f"{', '.join(theirs[:5])}{' ...' if len(theirs) > 5 else ''} (closest: {closest})", file=path)
