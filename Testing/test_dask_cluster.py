"""The main job on a real Dask cluster (`dask scheduler` + two `dask worker` processes on 127.0.0.1,
helpers_dask) gives the same metrics.json numbers, risk.csv and feature table as the run in this
process; a worker SIGKILLed mid-run loses and duplicates no patient and changes no number."""
from __future__ import annotations

import json
import os
import signal

import pytest

from COMPASSLib.pipeline import run
from helpers_dask import dask_cluster

SETTINGS = {"profile": "fast", "twin": {"epochs": 5}, "n_bootstrap": 20}
COMPARED = ("risk.csv", "lopo_risk.csv", "features.csv", "whatif_warned.csv")


def numbers(out):
    """metrics.json without its provenance (times, pids, addresses, settings: where and when it ran)."""
    m = json.loads((out / "metrics.json").read_text())
    m.pop("provenance")
    return m


@pytest.fixture(scope="module")
def local_run(small_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    run(small_cohort, out, SETTINGS)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("cluster"), n_workers=2) as c:
        yield c


def test_run_on_a_dask_cluster_equals_the_local_run(small_cohort, local_run, cluster, tmp_path):
    out = tmp_path / "out"
    metrics = run(small_cohort, out, {**SETTINGS, "scheduler": cluster.address})
    assert metrics["provenance"]["executor"]["kind"] == "dask"
    assert metrics["provenance"]["settings"]["run"]["scheduler"] == cluster.address
    assert numbers(out) == numbers(local_run)
    for name in COMPARED:
        assert (out / name).is_file() == (local_run / name).is_file(), name
        if (out / name).is_file():
            assert (out / name).read_bytes() == (local_run / name).read_bytes(), name
    # the work really ran on the workers: every patient and every fold in a worker process
    workers = set(cluster.worker_pids())
    assert {s["pid"] for s in metrics["provenance"]["feature_tasks"].values()} <= workers
    assert metrics["provenance"]["steps"]["evaluation"]["tasks"] == 3
    assert metrics["cv"]["scheme"] == "lopo" and len(metrics["cv"]["folds"]) == 3


def test_a_worker_killed_mid_run_loses_no_patient(small_cohort, local_run, cluster, tmp_path):
    """SIGKILL to the first worker seen with a patient in flight (fresh cache: the features are computed
    now); Dask reschedules its task on the other worker."""
    import threading
    import time

    from dask.distributed import Client

    killed, stop = [], threading.Event()

    def kill_first_busy_worker(watcher):
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            busy = [a for a, keys in watcher.processing().items() if keys]
            if busy:
                killed.append(watcher.run(os.getpid, workers=busy[:1])[busy[0]])
                os.kill(killed[0], signal.SIGKILL)
                return
            time.sleep(0.01)

    with Client(cluster.address, timeout=30) as watcher:
        killer = threading.Thread(target=kill_first_busy_worker, args=(watcher,), daemon=True)
        killer.start()
        try:
            out = tmp_path / "out"
            metrics = run(small_cohort, out, {**SETTINGS, "scheduler": cluster.address,
                                              "cache_dir": str(tmp_path / "fresh_cache")})
        finally:
            stop.set()
            killer.join(30)
    assert killed and killed[0] not in cluster.worker_pids()      # it is gone
    tasks = metrics["provenance"]["feature_tasks"]
    assert sorted(tasks) == sorted(json.loads((local_run / "metrics.json").read_text())
                                   ["provenance"]["feature_tasks"])   # every patient once
    assert sum(s["pid"] == killed[0] for s in tasks.values()) <= 1  # at most the one done before the kill
    assert not metrics["provenance"]["feature_failures"]
    assert numbers(out) == numbers(local_run)
    for name in COMPARED:
        assert (out / name).read_bytes() == (local_run / name).read_bytes(), name
