"""A real Dask cluster for tests: `dask scheduler` and `dask worker` processes of this venv on 127.0.0.1
(random free ports, no dashboard, one thread per worker), bounded in time twice over (the scheduler stops
itself when idle, every worker at its lifetime or when the scheduler is gone) and stopped by their
process ids at exit."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DASK = Path(sys.executable).with_name("dask")
LIFETIME_S = 300          # the longest a cluster of a test may live, whatever happens to the test process
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class Cluster:
    def __init__(self, address, scheduler, workers, folder):
        self.address = address
        self.scheduler = scheduler      # subprocess.Popen of `dask scheduler`
        self.workers = workers          # [subprocess.Popen of `dask worker`]
        self.folder = folder

    def worker_pids(self) -> list:
        return [w.pid for w in self.workers if w.poll() is None]


def _stop(proc, grace_s=3):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)


@contextlib.contextmanager
def dask_cluster(folder, n_workers=2, start_timeout_s=90):
    """Yield a Cluster of a scheduler and `n_workers` worker processes (no nanny: a worker killed is gone,
    not restarted); logs in `folder`."""
    from dask.distributed import Client

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ONE_THREAD}
    file = folder / "scheduler.json"
    procs = []

    def start(args, log):
        procs.append(subprocess.Popen([str(DASK), *args], env=env, cwd=folder, stdin=subprocess.DEVNULL,
                                      stdout=open(folder / log, "wb"), stderr=subprocess.STDOUT))
        return procs[-1]

    try:
        scheduler = start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                           "--scheduler-file", str(file), "--idle-timeout", f"{LIFETIME_S}s"], "scheduler.log")
        deadline = time.monotonic() + start_timeout_s
        while not file.is_file():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dask scheduler did not start: " + (folder / "scheduler.log").read_text())
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        workers = [start(["worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                          "--no-dashboard", "--lifetime", f"{LIFETIME_S}s", "--death-timeout", "30s",
                          "--name", f"w{i}"], f"worker{i}.log") for i in range(n_workers)]
        with Client(address, timeout=30) as client:
            client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
        yield Cluster(address, scheduler, workers, folder)
    finally:
        for p in reversed(procs):         # workers first, then the scheduler; each by its own pid
            _stop(p)


# --- task functions for the executor tests: module-level and light, so spawned workers import them fast
def fail_on(i, bad):
    if i == bad:
        raise ValueError(f"task {i} failed")
    time.sleep(0.2)
    return i


def write_entry(root, key, seed, writers=2, wait_s=60.0):
    """Write the same content-keyed feature-cache entry 15 times (what a retried or repeated task does), once
    `writers` tasks have started: each marks its start in ROOT/started/ and waits for the others, so the
    writes overlap in separate processes (a pool worker that finished its task quickly would otherwise take
    the other one too, on a busy machine: CI, 4 Dec)."""
    import time
    from pathlib import Path

    import numpy as np

    from COMPASSLib.features.cache import FeatureCache

    started = Path(root) / "started"
    started.mkdir(parents=True, exist_ok=True)
    (started / str(seed)).touch()
    deadline = time.monotonic() + wait_s
    while len(list(started.iterdir())) < writers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"write_entry {seed}: the other writers did not start within {wait_s} s")
        time.sleep(0.01)
    cache = FeatureCache(root, "P1")
    for _ in range(15):
        cache.save(key, [{"organ": "Heart", "fraction": 1, "bed_mean_gy": 2.5}],
                   {"bed_Heart": np.ones((32, 32, 16), "float32")})    # same key, same bytes
    return seed
