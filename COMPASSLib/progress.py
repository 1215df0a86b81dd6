"""The one progress protocol of every long COMPASS call, and its adapters at the edges.

A long call takes `progress`, a callable `progress(fraction_done, message)` with `fraction_done` in
[0, 1] and a short message saying what is being done; it may return False to ask the work to stop,
which raises `Cancelled` at the next step (nothing half written stays behind: outputs are atomic).
`None` means nobody is watching. The library reports through `report`, splits its range over
sub-steps with `scaled` and over counted items with `counted`; the edges adapt the callable:
`console` (tqdm on a terminal, one line per step in logs) for the command line, the Slicer module's
progress bar and Cancel button, and Dask futures completing (features.scheduling).
"""
from __future__ import annotations

import sys

from COMPASSLib.errors import CompassError


class Cancelled(CompassError):
    """The user (or a progress callback returning False) stopped a long operation."""


def report(progress, fraction_done: float, message: str) -> None:
    """Tell `progress` how far the work is; raise `Cancelled` when it answers False."""
    if progress is not None and progress(min(max(float(fraction_done), 0.0), 1.0), message) is False:
        raise Cancelled(f"cancelled: {message}")


def scaled(progress, start: float, stop: float):
    """A progress callable for a sub-step that covers [start, stop] of the caller's range (None stays None)."""
    if progress is None:
        return None
    return lambda fraction_done, message: progress(start + (stop - start) * fraction_done, message)


def counted(progress, total: int, message: str):
    """A `step(done)` function for work over `total` items: reports done/total with `message`
    (formatted with done and total, e.g. "patient {done}/{total}")."""
    def step(done: int) -> None:
        report(progress, done / max(total, 1), message.format(done=done, total=total))
    return step


def console(stream=None):
    """The command line's adapter: a tqdm bar over 0-100 % with the message as its label where `stream`
    (default stderr) is a terminal; elsewhere (logs, CI) one line per new message. Never cancels."""
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        from tqdm.auto import tqdm

        bar = tqdm(total=100, file=stream, bar_format="{l_bar}{bar}| {elapsed}", leave=False)

        def on_progress(fraction_done, message):
            bar.set_description_str(message, refresh=False)
            bar.update(round(100 * fraction_done) - bar.n)
            if fraction_done >= 1.0:
                bar.close()
        return on_progress

    last = [None]

    def on_progress(fraction_done, message):
        if message != last[0]:
            print(f"[{100 * fraction_done:3.0f}%] {message}", file=stream, flush=True)
            last[0] = message
    return on_progress
