"""Where a list of independent tasks runs: in this process, on a local pool of spawned processes, or on a
Dask cluster -- one piece of code for every heavy step of COMPASS (per-patient features, evaluation folds,
texture maps), so that a step gives the same results wherever it ran.

    with Executor(workers=4) as ex:                      # or Executor(scheduler="tcp://host:8786")
        for done in ex.run(fn, [(a1, b1), (a2, b2)], progress, "folds: {done}/{total}"):
            done.index, done.value, done.stats          # as each task finishes, in any order

`fn` must be a module-level function (pickled by reference for a pool or a Dask worker) of plain data.
Each result comes with the task's own wall time and the peak resident memory of the process that ran it
(`stats`, measured there: what docs/scaling.md and Testing/Benchmarks/bench_scale.py report). An error
in a task, or a progress callback asking to stop (COMPASSLib.progress), cancels the tasks not finished
and is raised here. On Dask each task is a fresh, impure task (settings or files may have changed since a
previous run); a task whose worker dies is rescheduled by Dask on another one, and a result arriving twice
(a recomputed lost result) is yielded once.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

from COMPASSLib.progress import counted


# how long to wait for a scheduler to answer before the run fails with an error naming its address
CONNECT_TIMEOUT_S = 30


@dataclass
class Done:
    index: int        # position of the task in the list given to `run`
    value: object     # what fn returned
    stats: dict       # {"seconds", "peak_rss_bytes", "pid", "host"} of the task, measured where it ran


def measured(fn, *args):
    """fn(*args) and the stats of the call in the process running it. Peak memory is the process's
    high-water mark so far (getrusage), an upper bound of this task's: a worker holds one task at a time."""
    import platform
    import resource

    t0 = time.perf_counter()
    value = fn(*args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if platform.system() == "Darwin" else 1024       # bytes on macOS, KiB on Linux
    return value, {"seconds": time.perf_counter() - t0, "peak_rss_bytes": int(peak), "pid": os.getpid(),
                   "host": platform.node()}


def limit_threads(n: int) -> None:
    """Worker-process initialiser: at most n compute threads for torch (which loads later, inside the
    work) and for BLAS libraries not loaded yet."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


@contextlib.contextmanager
def one_thread():
    """One compute thread in the BLAS/OpenMP libraries of numpy, scipy and torch and in ITK (SimpleITK)
    for the block: the numbers then do not depend on where it ran (a pool or Dask worker started with one
    thread, or this process with all cores), and workers sharing a machine do not oversubscribe it. ITK's
    own default is a thread per core in every process: two single-thread Dask workers on 2 cores ran their
    feature tasks 17-22 % slower than one worker alone (fork-join filters waiting for a core the other
    worker holds); alone, one ITK thread costs nothing on the synthetic grids (10 patients' features: 16.4 s
    with one thread, 16.4-17.7 s with two). The libraries are loaded first, since the limit reaches loaded
    ones only."""
    import scipy.optimize  # noqa: F401  (loads scipy's own BLAS)
    import SimpleITK as sitk
    import sklearn.linear_model  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    torch.set_num_threads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before[0])
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before[1])


class Executor:
    """Runs tasks in this process (workers=1, no scheduler), on a spawn pool of `workers` processes, or on
    the Dask cluster of `scheduler` (an address "tcp://host:port", or a dask.distributed.Client, which is
    then used and left open). A context manager: the pool or the client connection is opened on first
    use and closed at exit, so the steps of one job share it."""

    def __init__(self, workers: int = 1, scheduler=None):
        self.workers = int(workers or 1)
        self.scheduler = scheduler
        self._pool = None
        self._client = None

    @property
    def kind(self) -> str:
        return "dask" if self.scheduler is not None else "pool" if self.workers > 1 else "process"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None and self._client is not self.scheduler:
            self._client.close()
        self._client = None

    def client(self):
        """The dask.distributed.Client (connected once per executor)."""
        from dask.distributed import Client

        if self._client is None:
            if isinstance(self.scheduler, Client):
                self._client = self.scheduler
            else:
                try:
                    self._client = Client(self.scheduler, timeout=CONNECT_TIMEOUT_S)
                except (OSError, TimeoutError, ValueError) as e:
                    from COMPASSLib.errors import InputError

                    raise InputError(f"cannot reach the Dask scheduler at {self.scheduler!r} within "
                                     f"{CONNECT_TIMEOUT_S} s ({type(e).__name__}: {e}); is it running, and is the "
                                     "address tcp://host:port?") from None
        return self._client

    def run(self, fn, tasks, progress=None, message: str = "{done}/{total} tasks"):
        """Yield a `Done` per task as it finishes; report done/total through `progress` after each."""
        tasks = [tuple(t) for t in tasks]
        step = counted(progress, len(tasks), message)
        step(0)
        if self.kind == "dask":
            results = self._on_dask(fn, tasks)
        elif self.kind == "pool" and len(tasks) > 1:
            results = self._on_pool(fn, tasks)
        else:
            results = ((i, *measured(fn, *t)) for i, t in enumerate(tasks))
        seen = set()
        try:
            for i, value, stats in results:
                if i in seen:
                    continue
                seen.add(i)
                step(len(seen))
                yield Done(i, value, stats)
        finally:
            results.close()      # cancels what is not finished when the caller stops or a step raised

    def _pool_executor(self):
        import concurrent.futures as cf
        import multiprocessing

        if self._pool is None:
            # spawn: workers start clean (no inherited threads or locks from the caller, e.g. a Dask client)
            ctx = multiprocessing.get_context("spawn")
            # the cores shared out between the workers (torch in each would otherwise take them all)
            share = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                                initializer=limit_threads, initargs=(share,))
        return self._pool

    def _on_pool(self, fn, tasks):
        import concurrent.futures as cf

        pool = self._pool_executor()
        index = {pool.submit(measured, fn, *t): i for i, t in enumerate(tasks)}
        try:
            for f in cf.as_completed(index):
                yield (index[f], *f.result())
        finally:                 # cancelled, failed or closed early: tasks not started are dropped
            for f in index:
                f.cancel()

    def _on_dask(self, fn, tasks):
        from dask.distributed import as_completed

        client = self.client()
        futures = [client.submit(measured, fn, *t, pure=False) for t in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for f in as_completed(futures):
                value, stats = f.result()
                yield index[f.key], value, stats
                f.release()      # the worker may drop the result now: memory stays bounded per task
        finally:
            client.cancel(futures)


@contextlib.contextmanager
def using(workers=1, scheduler=None):
    """An Executor for (workers, scheduler), closed at exit; `scheduler` itself when it already is an
    Executor (then the caller that opened it closes it)."""
    if isinstance(scheduler, Executor):
        yield scheduler
        return
    with Executor(workers, scheduler) as ex:
        yield ex
