"""Where the per-patient feature work runs: in this process, a local process pool, or a Dask cluster.
All three run the same `patient.extract_patient` and report per finished patient through the progress
protocol (COMPASSLib.progress), so the table is the same whichever ran it."""
from __future__ import annotations

import os

from COMPASSLib.features.patient import extract_patient
from COMPASSLib.progress import counted


def run_patients(cohort, ids, sdict, cache_dir, organs, workers=1, scheduler=None, progress=None):
    """Yield each patient's result (extract_patient's dict) as it finishes."""
    step = counted(progress, len(ids), "features: {done}/{total} patients")
    step(0)
    if scheduler is not None:
        results = _on_dask(cohort, ids, sdict, cache_dir, organs, scheduler)
    elif workers and workers > 1:
        results = _on_process_pool(cohort, ids, sdict, cache_dir, organs, workers)
    else:
        results = (extract_patient(cohort, pid, sdict, cache_dir, organs) for pid in ids)
    for done, result in enumerate(results, start=1):
        step(done)
        yield result


def _on_process_pool(cohort, ids, sdict, cache_dir, organs, workers):
    import concurrent.futures as cf
    import multiprocessing

    # spawn: workers start clean (no inherited threads or locks from the caller, e.g. a Dask client)
    ctx = multiprocessing.get_context("spawn")
    n = min(workers, len(ids)) or 1
    # the cores shared out between the workers (torch in each would otherwise take them all)
    share = max(1, (os.cpu_count() or 1) // n)
    with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=limit_threads,
                                initargs=(share,)) as pool:
        futures = [pool.submit(extract_patient, cohort, pid, sdict, cache_dir, organs) for pid in ids]
        try:
            for f in cf.as_completed(futures):
                yield f.result()
        except BaseException:   # cancelled or failed: patients not started are dropped
            for f in futures:
                f.cancel()
            raise


def limit_threads(n: int) -> None:
    """Worker-process initialiser: at most n compute threads for torch (which loads later, inside the
    work) and for BLAS libraries not loaded yet."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def _on_dask(cohort, ids, sdict, cache_dir, organs, scheduler):
    from dask.distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        # pure=False: a fresh task per call (settings or files may have changed since a previous run)
        futures = [client.submit(extract_patient, cohort, pid, sdict, cache_dir, organs, pure=False) for pid in ids]
        try:
            for f in as_completed(futures):
                yield f.result()
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        if client is not scheduler:
            client.close()
