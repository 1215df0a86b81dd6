"""Atomic output: a reader never sees a half-written file, and a failed write leaves the old one intact;
a job's output folder staged beside it and promoted whole (`staged_dir`); output paths checked before any
work (`check_output`); JSON written atomically and read back with an error that names the file; names
made safe as path components."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` (same suffixes, so writers pick the format from it);
    on success it is renamed over `path`, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp creates 0600; give the file the mode a plain open() would have
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def json_text(obj, indent: int = 2) -> str:
    """`obj` as the JSON text write_json writes (numpy scalars and arrays, paths allowed)."""
    return json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n"


def write_json(path, obj, indent: int = 2) -> Path:
    return write_text(path, json_text(obj, indent))


def read_json(path, what: str = "JSON file", error=None):
    """The JSON document in `path`; a missing or invalid file raises `error` (a CompassError class,
    default InputError) naming the file and what it should have been."""
    from COMPASSLib.errors import InputError

    error = error or InputError
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} not found", file=path) from None
    except UnicodeDecodeError as e:
        raise error(f"{what} is not UTF-8 text: {e}", file=path) from None
    except json.JSONDecodeError as e:
        raise error(f"{what} is not valid JSON: {e}", file=path) from None


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; on success it replaces `path` (old one removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def safe_filename(name) -> str:
    """`name` (e.g. a patient id) as one path component: letters, digits, '-', '_' and '.' kept,
    anything else '_' (no separators, no surprises on any file system); '', '.' and '..' (not
    names of a folder of their own) get a leading '_'."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
    return "_" + safe if safe.strip(".") == "" else safe


# --- output folders whole or absent ------------------------------------------------------------------
STAGING_TAG = ".partial-"


def _real(path) -> Path:
    """`path` absolute, links followed (a staging folder goes beside the real folder, on its file system)."""
    return Path(path).resolve()


def staging_parent(out_dir) -> Path:
    """Where a staging folder for `out_dir` goes: beside it (the folder holding OUT), or inside an
    existing OUT when the folder holding it cannot be written or is another file system (OUT a mount
    point, e.g. a container volume): the staged entries must reach OUT by renames."""
    out = _real(out_dir)
    if out.is_dir() and out.parent != out:
        if os.stat(out).st_dev != os.stat(out.parent).st_dev or _cannot_write(out.parent):
            return out
    return out.parent


def staging_path(out_dir) -> Path:
    """A fresh staging folder for `out_dir` (in `staging_parent`): `.OUT.partial-<pid>-<8 hex>`, with the
    pid of the process that owns it, so that a later job can tell a staging folder left by a killed
    process from a live one."""
    out = _real(out_dir)
    return staging_parent(out) / f".{out.name}{STAGING_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)   # signal 0: a check, nothing is sent (POSIX only; see remove_stale_staging)
    except ProcessLookupError:
        return False
    except OSError:       # e.g. PermissionError: a process of another user
        return True
    return True


def remove_stale_staging(out_dir) -> list:
    """Remove the staging folders of `out_dir` whose process is gone (a run killed with SIGKILL, a crashed
    application); those of live processes (a job writing into the same OUT now) are kept. Only names
    `staging_path` makes are touched. Not on Windows (os.kill there would end the process). Returns the
    removed folders."""
    if os.name == "nt":
        return []
    out = _real(out_dir)
    pattern = re.compile(rf"^\.{re.escape(out.name)}{re.escape(STAGING_TAG)}(\d+)-[0-9a-f]{{8}}$")
    removed = []
    for where in dict.fromkeys((out.parent, out)):
        try:
            entries = list(where.iterdir())
        except OSError:
            continue
        for entry in entries:
            m = pattern.match(entry.name)
            if m and entry.is_dir() and not entry.is_symlink() and not _alive(int(m.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def promote(staging, out_dir) -> None:
    """Move every entry of `staging` into `out_dir` (created if needed), each replacing the entry of the
    same name (a folder as a whole: an earlier run's model/ is replaced, not merged), then remove
    `staging`. Entries of `out_dir` that `staging` does not hold (the feature cache, files of the user)
    are left alone. Each move is one rename on the same file system."""
    staging, out_dir = Path(staging), _real(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    aside = staging / ".compass-replaced"   # earlier entries that are folders (or give way to one)
    for entry in sorted(staging.iterdir()):
        if entry == aside:
            continue
        target = out_dir / entry.name
        if target.is_symlink() or not (target.is_dir() or entry.is_dir()):
            os.replace(entry, target)      # a file over a file (or a link): one atomic rename
            continue
        if target.exists():                # a folder on either side: the old entry steps aside first
            aside.mkdir(exist_ok=True)
            os.replace(target, aside / entry.name)
        os.replace(entry, target)
    shutil.rmtree(staging)


def _make_parents(folder: Path) -> list:
    """mkdir -p `folder`; the folders it created, outermost first."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


@contextlib.contextmanager
def staged_dir(out_dir, staging=None):
    """A job's outputs whole or absent. Yields an empty staging folder (`staging`, or a fresh
    `staging_path`: beside OUT) for the job to write into; when the block ends normally its entries are
    promoted into `out_dir` (`promote`); on any exception (an error, Cancelled, KeyboardInterrupt) the
    staging folder is removed and `out_dir` is left as it was (folders created above it are removed
    again when empty). A process killed outright cannot clean up: its staging folder stays until the
    next staged job into the same OUT removes it (`remove_stale_staging`)."""
    out = _real(out_dir)
    remove_stale_staging(out)
    stage = Path(staging) if staging is not None else staging_path(out)
    created = _make_parents(stage.parent)
    stage.mkdir()
    try:
        yield stage
        promote(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()     # only when empty: e.g. the job's feature cache is kept
        raise


# --- output paths checked before any work ----------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    """`path` or the nearest folder above it that exists (a regular file on the way is returned too)."""
    p = path
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        p = p.parent
    return p


def _cannot_write(folder: Path):
    """None when files can be created in `folder`, else why not. os.access first; as root (or with ACLs)
    it says yes to nearly anything, so a probe folder is created and removed too (read-only mounts,
    /proc, full quotas)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:
        probe = tempfile.mkdtemp(prefix=".compass-probe-", dir=folder)
    except OSError as e:
        return e.strerror or type(e).__name__
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return None


def check_output(path, what: str = "output folder", *, folder: bool = True, staged: bool = False) -> Path:
    """Refuse, before any work starts, an output path that cannot be written: InputError naming the path
    and what is wrong (an existing file where a folder is wanted or the reverse, a regular file among the
    folders above it, a folder that cannot be written). `folder`: the output is a folder (written into),
    else a file (written beside itself, then renamed); `staged`: the folder is staged (`staged_dir`), so
    the folder its staging folder goes in must be writable too. Returns `Path(path)`."""
    from COMPASSLib.errors import InputError

    given = Path(path)
    if not str(path).strip():
        raise InputError(f"choose the {what} (an empty path would write into the working folder)")
    if given.exists() or given.is_symlink():
        if folder and not given.is_dir():
            raise InputError(f"the {what} is an existing file, not a folder", file=given)
        if not folder and given.is_dir():
            raise InputError(f"the {what} is an existing folder, not a file", file=given)
    real = Path(os.path.abspath(given))
    need = []   # folders that files are created in (the nearest existing one)
    if folder:
        need.append(_existing_ancestor(real))
    if not folder or (staged and not (real.is_dir() and staging_parent(real) == _real(real))):
        need.append(_existing_ancestor(real.parent))
    for where in dict.fromkeys(need):
        if not where.is_dir():
            raise InputError(f"cannot write the {what}: {where} is a file, not a folder", file=given)
        why = _cannot_write(where)
        if why:
            raise InputError(f"cannot write the {what}: folder {where} is not writable ({why})", file=given)
    return given
