"""Where the per-patient feature work runs: in this process, a local process pool, or a Dask cluster
(COMPASSLib.executors, the one task runner of every heavy step). All run the same
`patient.extract_patient` and report per finished patient through the progress protocol
(COMPASSLib.progress), so the table is the same whichever ran it."""
from __future__ import annotations

from COMPASSLib.executors import using
from COMPASSLib.features.patient import extract_patient


def run_patients(cohort, ids, sdict, cache_dir, organs, workers=1, scheduler=None, progress=None):
    """Yield each patient's result (extract_patient's dict, with the task's `stats`: seconds and peak
    resident memory of the worker) as it finishes. `scheduler`: a Dask address or Client, or an open
    COMPASSLib.executors.Executor (then `workers` is its business)."""
    with using(workers, scheduler) as ex:
        for done in ex.run(extract_patient, [(cohort, pid, sdict, cache_dir, organs) for pid in ids], progress,
                           "features: {done}/{total} patients"):
            yield {**done.value, "stats": done.stats}
