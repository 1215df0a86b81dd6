"""COMPASSLib.executors on real processes (the evaluation folds and the features on Dask workers, with the
same bits as in this process: test_dask_cluster.py): a failing task or a progress callback saying stop
cancels the rest; the feature cache stays whole with two processes writing the same entry at once."""
from __future__ import annotations

import threading

import pytest

from COMPASSLib.executors import Executor
from COMPASSLib.progress import Cancelled
from helpers_dask import fail_on, write_entry

ROWS = [{"organ": "Heart", "fraction": 1, "bed_mean_gy": 2.5}]


@pytest.fixture(scope="module")
def pool():
    with Executor(workers=2) as ex:        # spawned once for the module's tests
        yield ex


@pytest.mark.parametrize("where", ["in-process", "pool"])
def test_a_failing_task_is_raised_and_the_rest_cancelled(where, request):
    ex = Executor() if where == "in-process" else request.getfixturevalue("pool")
    seen = []
    with pytest.raises(ValueError, match="task 0 failed"):
        for done in ex.run(fail_on, [(i, 0) for i in range(20)]):
            seen.append(done.index)
    assert len(seen) < 19          # the pool had at most its running tasks left to finish


def test_progress_saying_stop_cancels():
    calls = []

    def progress(fraction_done, message):
        calls.append(message)
        return len(calls) < 3        # stop after the second task

    with Executor() as ex, pytest.raises(Cancelled, match="2/5 things"):
        list(ex.run(fail_on, [(i, -1) for i in range(5)], progress, "{done}/{total} things"))
    assert calls == ["0/5 things", "1/5 things", "2/5 things"]


def test_feature_cache_entry_stays_whole_under_concurrent_writers(tmp_path, pool):
    """Two worker processes write the same content-keyed entry over and over (a Dask retry, two runs on
    shared storage) while this process reads it: every read is absent or the whole entry, never a part."""
    from COMPASSLib.features.cache import FeatureCache

    reader = FeatureCache(tmp_path, "P1")
    reads, stop = [], threading.Event()

    def read_all_the_time():
        while not stop.is_set():
            reads.append(reader.load_rows("k" * 64))

    thread = threading.Thread(target=read_all_the_time, daemon=True)
    thread.start()
    try:
        done = list(pool.run(write_entry, [(str(tmp_path), "k" * 64, s) for s in (1, 2)]))
    finally:
        stop.set()
        thread.join(10)
    assert sorted(d.value for d in done) == [1, 2] and len({d.stats["pid"] for d in done}) == 2
    assert any(r is not None for r in reads)
    assert all(r is None or r == ROWS for r in reads)
    assert reader.load_maps("k" * 64)["bed_Heart"].shape == (32, 32, 16)
    assert not list((tmp_path / "P1").glob(".*tmp*"))     # no temporary file left behind


def test_one_thread_covers_itk_and_torch_and_restores_them():
    """A feature task runs SimpleITK on one thread (ITK's default is one per core: workers sharing a
    machine would oversubscribe it, and reductions could depend on the core count), then leaves the
    process's own settings as they were."""
    import SimpleITK as sitk
    import torch

    from COMPASSLib.executors import one_thread

    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), torch.get_num_threads()
    with one_thread():
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1
        assert torch.get_num_threads() == 1
    assert (sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), torch.get_num_threads()) == before
