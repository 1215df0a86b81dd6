"""COMPASSLib.allocator: freed memory held for reuse inside the block (glibc), bookkeeping of nested and
concurrent blocks, and a no-op where there is no glibc."""
from __future__ import annotations

import resource
import threading

import numpy as np
import pytest

from COMPASSLib import allocator


def _faults_of_big_allocations(times=4, mib=96):
    """Minor page faults of allocating, touching and freeing a `mib` MiB array `times` times,
    after the first (which faults in any case)."""
    np.ones(mib * 2 ** 20 // 8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        a = np.ones(mib * 2 ** 20 // 8)
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(allocator._libc() is None, reason="glibc only")
def test_freed_memory_is_reused_inside_the_block():
    outside = _faults_of_big_allocations()
    with allocator.hold_freed_memory():
        inside = _faults_of_big_allocations()
    # outside, a block this large is always a fresh mapping (glibc's mmap threshold is at most
    # 32 MiB) and faults in again (at least once per 2 MiB, with transparent huge pages); inside,
    # the freed block is reused
    assert outside >= 4 * 48
    assert inside <= outside / 20
    assert allocator._depth == 0


class _RecordingLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


def test_nested_and_concurrent_blocks_set_and_restore_once(monkeypatch):
    fake = _RecordingLibc()
    monkeypatch.setattr(allocator, "_libc", lambda: fake)
    barrier = threading.Barrier(3)

    def worker():
        with allocator.hold_freed_memory():
            barrier.wait()
            barrier.wait()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    with allocator.hold_freed_memory():
        with allocator.hold_freed_memory():
            barrier.wait()          # all three blocks open
            barrier.wait()
    for t in threads:
        t.join()
    held = [(allocator._M_MMAP_THRESHOLD, allocator._HOLD_MMAP), (allocator._M_TRIM_THRESHOLD, allocator._HOLD_TRIM)]
    after = [(allocator._M_MMAP_THRESHOLD, allocator._AFTER_MMAP), (allocator._M_TRIM_THRESHOLD, allocator._AFTER_TRIM)]
    assert fake.calls == held + after
    assert allocator._depth == 0


def test_errors_inside_the_block_restore_and_no_glibc_is_a_no_op(monkeypatch):
    fake = _RecordingLibc()
    monkeypatch.setattr(allocator, "_libc", lambda: fake)
    with pytest.raises(ValueError):
        with allocator.hold_freed_memory():
            raise ValueError("boom")
    assert len(fake.calls) == 4 and allocator._depth == 0
    monkeypatch.setattr(allocator, "_libc", lambda: None)
    with allocator.hold_freed_memory():
        pass
    assert allocator._depth == 0
