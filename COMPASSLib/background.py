"""Long COMPASS jobs in a background process, with progress that moves and a cancel that leaves nothing
half written: what the Slicer module's Run twin uses, so Slicer's window never waits on minutes of work.

    job = Job("run", cohort="cohort.json", out_dir="OUT", settings={...}).start()
    result = job.wait(progress)     # progress(fraction_done, message) -> False cancels (COMPASSLib.progress)

The job runs `python -m COMPASSLib.background SPEC.json` in its own process (group): Slicer's
PythonSlicer inside the application (the interpreter slicer.util.executePythonModule uses), this
interpreter elsewhere. The child reports progress as lines `COMPASS-PROGRESS {"f": ..., "m": ...}` on
stdout and its result or error as one `COMPASS-RESULT {...}` line; anything else it prints is passed on
as log lines. `wait` polls without blocking for long (the caller's progress callback runs between polls,
so a GUI that processes its events there stays responsive).

Outputs whole or absent: the child writes into a staging folder beside OUT (`.OUT.partial-<pid>-<id>`,
named here so that this side can remove it after a cancel) and moves its files into OUT only when the
job has finished (`atomic.staged_dir`, the one implementation `pipeline.run` uses too); a cancelled or
failed job's staging folder is removed. The feature cache (OUT/cache) is written in place: its entries
are atomic and keyed by content, so what a cancelled job computed is reused by the next one.

Jobs: "run" (pipeline.run: features, LOPO evaluation, final twin, report) and "score" (pipeline.score
with a saved model: risk after every fraction).
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from COMPASSLib.atomic import check_output, staged_dir, staging_path
from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.progress import Cancelled, report

PROGRESS_TAG = "COMPASS-PROGRESS "
RESULT_TAG = "COMPASS-RESULT "
KINDS = ("run", "score")


def python_executable() -> str:
    """The interpreter for the child: PythonSlicer inside the Slicer application (on PATH there, the one
    slicer.util.executePythonModule starts), this process's interpreter everywhere else."""
    try:
        import slicer

        if hasattr(slicer, "app"):
            found = shutil.which("PythonSlicer")
            if found:
                return found
    except ImportError:
        pass
    return sys.executable


class Job:
    """One background job. `kind`: "run" or "score"; `cohort`, `out_dir`; for "run" `settings` (the
    pipeline.run settings), for "score" `model` (a model folder) and optional `device`, `workers`."""

    def __init__(self, kind: str, cohort, out_dir, settings=None, model=None, device=None, workers: int = 1):
        if kind not in KINDS:
            raise InputError(f"unknown background job {kind!r}; known: {', '.join(KINDS)}")
        if not str(out_dir or "").strip() or str(out_dir) == ".":
            raise InputError("choose an output folder for the job (an empty path would write into the "
                             "application's working folder)")
        if kind == "score" and not model:
            raise InputError("a scoring job needs the model folder (`compass run`'s OUT/model)")
        self.out_dir = check_output(Path(out_dir).resolve(), "output folder", staged=True)
        self.staging = staging_path(self.out_dir)
        self.spec = {"kind": kind, "cohort": str(Path(cohort).resolve()), "out_dir": str(self.out_dir),
                     "staging": str(self.staging), "settings": settings or {},
                     "model": str(Path(model).resolve()) if model else None, "device": device,
                     "workers": int(workers)}
        self.process = None
        self.log: list = []
        self._events: queue.Queue = queue.Queue()
        self._spec_file = None

    # --- parent side ------------------------------------------------------------------------------
    def start(self) -> "Job":
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="compass-job-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.spec, f)
        self._spec_file = Path(name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               # the child imports COMPASSLib from where this process found it (source tree or extension)
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                              *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.process = subprocess.Popen(
            [python_executable(), "-m", "COMPASSLib.background", str(self._spec_file)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=(os.name != "nt"),   # its own process group: cancel stops its workers too
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if os.name == "nt" else 0)
        threading.Thread(target=self._read, name="compass-job-reader", daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if line.startswith(PROGRESS_TAG):
                self._events.put(("progress", json.loads(line[len(PROGRESS_TAG):])))
            elif line.startswith(RESULT_TAG):
                self._events.put(("result", json.loads(line[len(RESULT_TAG):])))
            else:
                self._events.put(("log", line))
        self._events.put(("eof", None))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cancel(self) -> None:
        """Stop the job and everything it started; remove what it staged."""
        if self.running:
            try:
                if os.name == "nt":
                    self.process.terminate()
                else:
                    os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                if os.name != "nt":
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._spec_file is not None:
            self._spec_file.unlink(missing_ok=True)

    def wait(self, progress=None, poll_s: float = 0.05) -> dict:
        """Pass the child's progress to `progress` until it ends; its result ({"risk_csv": ...,
        "out_dir": ...}). Cancelled when `progress` answers False (the job is stopped first); a
        CompassError with the child's one-line message when the job failed."""
        if self.process is None:
            self.start()
        result = None
        try:
            while True:
                try:
                    kind, value = self._events.get(timeout=poll_s)
                except queue.Empty:
                    report(progress, self._last, self._message)   # lets the caller breathe and cancel
                    continue
                if kind == "progress":
                    self._last, self._message = value["f"], value["m"]
                    report(progress, value["f"], value["m"])
                elif kind == "log":
                    self.log.append(value)
                elif kind == "result":
                    result = value
                elif kind == "eof":
                    break
        except BaseException:
            self.cancel()
            raise
        code = self.process.wait()
        self._cleanup()
        if result is None or "error" in result:
            message = (result or {}).get("error") or f"background job ended with exit code {code}: " + \
                " | ".join(self.log[-5:])
            raise CompassError(message)
        return result

    _last, _message = 0.0, "starting"


# --- child side ------------------------------------------------------------------------------------
def _say(fraction_done: float, message: str) -> None:
    print(PROGRESS_TAG + json.dumps({"f": round(float(fraction_done), 4), "m": message}), flush=True)


def _run(spec: dict) -> dict:
    from COMPASSLib import pipeline

    staging, out_dir = Path(spec["staging"]), Path(spec["out_dir"])
    if spec["kind"] == "run":
        pipeline.run(spec["cohort"], out_dir, spec["settings"], progress=_say, staging=staging)
    else:
        check_output(out_dir, "output folder", staged=True)
        with staged_dir(out_dir, staging) as stage:
            pipeline.score(spec["model"], spec["cohort"], stage, workers=spec["workers"],
                           cache_dir=out_dir / "cache", device=spec["device"], progress=_say)
    return {"out_dir": str(out_dir), "risk_csv": str(out_dir / "risk.csv")}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        result = _run(spec)
    except CompassError as e:   # the staging folder is gone already (staged_dir)
        print(RESULT_TAG + json.dumps({"error": str(e)}), flush=True)
        return 2
    except Exception as e:   # a bug: still one line for the user, the traceback in the log
        import traceback

        traceback.print_exc(file=sys.stdout)
        print(RESULT_TAG + json.dumps({"error": f"unexpected {type(e).__name__}: {e}"}), flush=True)
        return 1
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
