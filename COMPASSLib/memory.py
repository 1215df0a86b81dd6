"""Memory guard: an operation whose memory grows with a kernel size, a grid size or an organ count
estimates what it needs first and is refused with a CompassError above a limit, instead of dying in the
allocator (or being killed by the kernel) minutes later.

The limit, in bytes, is
- `COMPASS_MEMORY_LIMIT` when set: a size (`8G`, `512M`, `2.5GiB`, `1e9`; units K/M/G/T are powers of
  1024, a plain number is bytes), a share of the available memory (`50%`), or `off` (no limit);
  `compass --memory-limit SIZE ...` and the batch script's `--memory-limit` set it for one run;
- otherwise DEFAULT_SHARE (80 %) of the memory available now: MemAvailable of /proc/meminfo (Linux),
  lowered to what the container's cgroup still allows (memory.max - memory.current + reclaimable page
  cache) where that is less,
  or psutil's figure elsewhere. Where neither is known, there is no limit.

`check(operation, estimated_bytes, ...)` is the one call every guarded place makes; the estimates are the
callers' (texture maps: kernel centres x kernel positions per chunk in flight; image series and RTDOSE:
the voxels their headers announce; ingest and features: grid voxels x images and organs).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
from pathlib import Path

from COMPASSLib.errors import CompassError

ENV = "COMPASS_MEMORY_LIMIT"
DEFAULT_SHARE = 0.8
_UNITS = {"": 1, "B": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}
_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def format_bytes(n) -> str:
    """1536 -> '1.5 KiB' (binary units, three significant digits)."""
    n = float(n)
    if not math.isfinite(n):
        return str(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


def parse_size(text):
    """'8G' / '512MiB' / '1e9' -> bytes (int); '50%' -> ('share', 0.5); 'off' / 'none' -> None.
    CompassError for anything else."""
    value = str(text).strip()
    if value.lower() in ("off", "none", "unlimited"):
        return None
    if value.endswith("%"):
        try:
            share = float(value[:-1]) / 100.0
        except ValueError:
            share = float("nan")
        if not 0 < share <= 1:
            raise CompassError(f"memory limit {text!r}: a share must be between 0 % and 100 %")
        return ("share", share)
    match = re.fullmatch(r"([0-9.eE+]+)\s*([KMGT]?)(i?B)?", value, flags=re.IGNORECASE)
    try:
        number = float(match.group(1)) if match else float("nan")
    except ValueError:
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise CompassError(f"memory limit {text!r} is not a size such as 8G, 512M, 1e9 (bytes), 50% or off "
                           f"(${ENV} / --memory-limit)")
    return int(number * _UNITS[match.group(2).upper()])


def _meminfo_available():
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable, /proc/meminfo"
    except (OSError, ValueError, IndexError):
        pass
    return None, None


def _cgroup_room():
    """What the cgroup (v2) of this process may still allocate, or None when it has no limit: memory.max
    minus memory.current, not counting the page cache the kernel can reclaim (inactive_file)."""
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((_CGROUP / "memory.current").read_text().strip())
        stat = dict(line.split() for line in (_CGROUP / "memory.stat").read_text().splitlines() if " " in line)
        used -= int(stat.get("inactive_file", 0))
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def available_bytes():
    """(bytes of memory available now, where that figure comes from), or (None, None) when unknown."""
    available, source = _meminfo_available()
    if available is None:
        try:
            import psutil
        except ImportError:
            return None, None
        available, source = int(psutil.virtual_memory().available), "psutil"
    room = _cgroup_room()
    if room is not None and room < available:
        return room, "the cgroup's memory.max - memory.current"
    return available, source


def limit_bytes():
    """(limit in bytes or None for no limit, a description of where it comes from)."""
    setting = os.environ.get(ENV, "").strip()
    parsed = parse_size(setting) if setting else ("share", DEFAULT_SHARE)
    if parsed is None:
        return None, f"{ENV}={setting}"
    if isinstance(parsed, int):
        return parsed, f"{ENV}={setting}"
    available, source = available_bytes()
    if available is None:
        return None, "available memory unknown"
    share = parsed[1]
    how = f"{ENV}={setting}: " if setting else ""
    return int(share * available), f"{how}{share * 100:g} % of the {format_bytes(available)} available ({source})"


def check(operation: str, estimated_bytes, *, hint: str = "", error=CompassError, file=None, patient=None,
          fraction=None) -> None:
    """Refuse `operation` (raise `error`, a CompassError class) when `estimated_bytes` exceeds the limit.
    The message names the operation, the estimate, the limit and how to raise it; `hint` says what to
    change in the input or settings instead."""
    estimate = float(estimated_bytes)
    limit, source = limit_bytes()
    if limit is None and math.isfinite(estimate):
        return
    if math.isfinite(estimate) and estimate <= limit:
        return
    limit_text = f"the limit of {format_bytes(limit)} ({source})" if limit is not None else "any limit"
    raise error(f"{operation} needs an estimated {format_bytes(estimate)} of memory, above {limit_text}"
                + (f"; {hint}" if hint else "")
                + f"; to allow more set {ENV} (e.g. {ENV}=64G, 90% or off; `compass --memory-limit`)",
                file=file, patient=patient, fraction=fraction)


def grid_bytes(size, bytes_per_voxel) -> float:
    """Bytes of `bytes_per_voxel` on a grid of `size` voxels (any order of axes), as a float (no overflow)."""
    total = float(bytes_per_voxel)
    for n in size:
        total *= max(float(n), 0.0)
    return total


@contextlib.contextmanager
def limit_set(text):
    """`COMPASS_MEMORY_LIMIT` = text inside the block (checked first; None: left as it is), then as it was.
    Worker processes started inside the block inherit it."""
    if text is None:
        yield
        return
    parse_size(text)
    previous = os.environ.get(ENV)
    os.environ[ENV] = str(text)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
