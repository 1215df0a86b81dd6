"""The feature table: one row per patient x organ x fraction, the input of the twin.

Built per patient (features.patient: fraction by fraction through the content-keyed cache of
features.cache, the rows of features.fraction), in this process, a local process pool or a Dask cluster
(features.scheduling), then assembled here with the documented column order, increments and deltas.
"""
from __future__ import annotations

import logging
import warnings

from COMPASSLib.features.settings import FeatureSettings, organs_to_score

log = logging.getLogger(__name__)

KEYS = ("patient", "organ", "fraction")
GROUPS = ("bed_", "dvh_", "shape_", "dose_", "tex_", "ct_", "pet_", "clin_")
_DELTA_GROUPS = ("ct_", "pet_")


class FeatureWarning(UserWarning):
    """A feature group is missing for a patient/fraction (e.g. no PET that day): its columns are NaN."""


# --------------------------------------------------------------------------------------- cohort
def extract_cohort(cohort, settings=None, workers: int = 1, scheduler=None, cache_dir=None, progress=None,
                   clinical=None, organs=None):
    """The feature table of a cohort (path of cohort.json / its folder, or a Cohort). `settings`: a
    FeatureSettings, a dict of its fields, a profile name ("full", "fast") or None (full).

    workers > 1: a local process pool over patients; `scheduler`: a Dask scheduler address (or a
    distributed.Client, or an open COMPASSLib.executors.Executor) running the same per-patient function. Patients that fail (e.g. a missing dose
    file) are left out and listed in `table.attrs["failures"]` ({patient: message}); the others finish.
    `table.attrs` also holds `computed` ({patient: [fractions computed]}), `inputs` (checksums),
    `timings` and `settings`. `progress`: COMPASSLib.progress protocol, told as each patient finishes."""
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.features.scheduling import run_patients

    if settings is None or isinstance(settings, str):   # None or a profile name: "full", "fast"
        settings = FeatureSettings(profile=settings or "full")
    elif not isinstance(settings, FeatureSettings):
        settings = FeatureSettings.from_dict(dict(settings))
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    if not cohort.patients:
        from COMPASSLib.errors import InputError

        raise InputError("the cohort has no patients: nothing to extract", file=cohort.root / "cohort.json")
    organs = organs or organs_to_score(settings, cohort)
    sdict = settings.to_dict()
    cache_dir = str(cache_dir) if cache_dir else None
    ids = cohort.patient_ids
    results = list(run_patients(cohort, ids, sdict, cache_dir, organs, workers, scheduler, progress))

    results.sort(key=lambda r: ids.index(r["patient"]))
    failures, rows = {}, []
    for r in results:
        for w in r["warnings"]:
            log.warning(w)
            warnings.warn(w, FeatureWarning, stacklevel=2)
        if r["error"]:
            failures[r["patient"]] = r["error"]
            log.error("features: %s", r["error"])
        rows += r["rows"]
    table = assemble(rows, settings)
    if clinical:
        from COMPASSLib.features.clinical import join_clinical

        table = join_clinical(table, clinical)
    table.attrs.update({
        "failures": failures,
        "computed": {r["patient"]: r["computed"] for r in results},
        "inputs": {r["patient"]: r["inputs"] for r in results},
        "timings": [t for r in results for t in r["timings"]],
        "task_stats": {r["patient"]: r["stats"] for r in results},   # seconds, peak memory per patient
        "settings": settings.resolved(),
        "organs": organs,
    })
    return table


# --------------------------------------------------------------------------------------- table
def assemble(rows: list, settings: FeatureSettings):
    """Rows -> DataFrame with the documented column order, increments/rates and delta columns."""
    import pandas as pd

    from COMPASSLib.features.kinetics import add_increments

    if not rows:
        return pd.DataFrame(columns=list(KEYS))
    table = pd.DataFrame(rows)
    table["fraction"] = table["fraction"].astype(int)
    table = table.sort_values(list(KEYS), kind="stable").reset_index(drop=True)
    table = add_increments(table)
    if settings.delta:
        table = _add_deltas(table)
    return table[order_columns(table.columns)]


def _add_deltas(table):
    """<group>delta_<feature>: value at fraction k minus the value at the organ's first fraction."""
    import pandas as pd

    cols = [c for c in table.columns if c.startswith(_DELTA_GROUPS)]
    # the baseline is the first fraction's own value (NaN when its scan is missing), broadcast per organ
    firstrow = table.groupby(["patient", "organ"], sort=False)["fraction"].transform("min") == table["fraction"]
    base = table[cols].where(firstrow).groupby([table["patient"], table["organ"]], sort=False).transform("max")
    deltas = table[cols].to_numpy(dtype=float) - base.to_numpy(dtype=float)
    names = [c.split("_", 1)[0] + "_delta_" + c.split("_", 1)[1] for c in cols]
    return pd.concat([table, pd.DataFrame(deltas, columns=names, index=table.index)], axis=1)


def order_columns(columns) -> list:
    """patient, organ, fraction, then the groups in GROUPS order (first-seen order inside a group)."""
    columns = list(columns)
    out = [c for c in KEYS if c in columns]
    for g in GROUPS:
        out += [c for c in columns if c.startswith(g) and c not in out]
    out += [c for c in columns if c not in out]
    return out
