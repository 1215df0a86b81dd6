"""Keep freed heap memory for reuse during array-heavy loops (glibc on Linux; a no-op elsewhere).

Texture maps run the same sequence of large tensor allocations once per chunk. glibc serves large
blocks with fresh mmap pages and returns freed memory at the top of the heap to the system, so
every chunk page-faults its working set in again: measured at 20-25 % of the wall time of a
heart-sized map (Testing/Benchmarks/bench_texture_maps.py). Inside `hold_freed_memory()` blocks of
up to 256 MiB come from the heap and freed memory stays there for the next chunk; on leaving, the
thresholds are set to the values glibc's own dynamic adjustment tops out at (32 MiB mmap, 64 MiB
trim), so the process holds no more than glibc would after large allocations (measured: resident
memory after a heart-sized map 409 MiB with, 444-459 MiB without). Setting a threshold ends
glibc's dynamic adjustment for the process; the values chosen are where it settles under large
allocations anyway, and a process that set its own (MALLOC_*_THRESHOLD_) gets these after a map.
Dask tunes the same glibc setting for its workers (MALLOC_TRIM_THRESHOLD_).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
import threading

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_HOLD_MMAP = 256 * 2 ** 20
_HOLD_TRIM = 2 ** 31 - 1          # mallopt takes an int
_AFTER_MMAP = 32 * 2 ** 20        # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
_AFTER_TRIM = 2 * _AFTER_MMAP     # what its dynamic rule sets alongside

_lock = threading.Lock()
_depth = 0


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc, or None (other C libraries and systems have no mallopt)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def hold_freed_memory():
    """Within the block, freed memory is kept for reuse instead of going back to the system and
    coming back page by page; glibc's usual limits return when the last (nested or concurrent)
    block ends."""
    global _depth
    libc = _libc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _HOLD_MMAP)
            libc.mallopt(_M_TRIM_THRESHOLD, _HOLD_TRIM)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP)
                libc.mallopt(_M_TRIM_THRESHOLD, _AFTER_TRIM)
