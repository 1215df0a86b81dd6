"""`compass synth --scheduler ADDR`: the patients made on the workers of a real Dask cluster (separate
processes) are the same files, byte for byte, as a serial run (each patient has its own random streams)."""
from __future__ import annotations

import pytest

from COMPASSLib.cli import main

from test_synth_determinism import file_hashes


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_dask_cohort_equals_serial_byte_for_byte(small_cohort, tmp_path, cluster, capsys):
    """The session's small cohort (made serially: 3 patients x 3 fractions, seed 11) made again on Dask."""
    from dask.distributed import Client, get_task_stream

    serial, dask = small_cohort.parent, tmp_path / "dask"
    argv = ["synth", str(dask), "--patients", "3", "--fractions", "3", "--seed", "11", "--size", "small",
            "--scheduler", cluster.scheduler_address]
    with Client(cluster.scheduler_address) as client, get_task_stream(client) as stream:
        assert main(argv) == 0       # the command's own client; the scheduler records its tasks
    assert capsys.readouterr().out.strip() == str(dask / "cohort.json")
    a, b = file_hashes(serial), file_hashes(dask)
    assert len(a) > 100 and a == b
    # one task per patient, run by the cluster's worker processes
    assert len(stream.data) == 3
    assert {t["worker"] for t in stream.data} <= set(cluster.scheduler_info["workers"])
