"""What the scheduling loop tells the world: one event per thing that happened.

Events are plain dicts with an `event` name (trial-started, trial-finished, trial-failed, trial-retrying,
trial-adopted, trial-cancelled, trial-left-running, trials-added (an adaptive search's new round), message,
run-started, run-finished). Three reporters render them: JSON lines on stdout (`--format json`, for
machines), a rich progress bar with counts and an ETA on stderr (a terminal), and plain timestamped lines
on stderr where there is no terminal (a Jenkins console, nohup, `| tee`, a pod's log), where a bar would
show nothing until the run ends.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Protocol, TextIO

from rich.text import Text


class Reporter(Protocol):
    def emit(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def timestamped(text: str) -> str:
    """One progress line as every command writes it where there is no terminal: `2026-01-31T09:00:00Z text`."""
    return f"{_now()} {text}"


SUMMARY_EVERY_S = 60.0   # PlainLines: at most one summary line per this many seconds (HPT_PROGRESS_EVERY_S)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class JsonLines:
    """One JSON object per line, flushed at once so a CI log shows progress live."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout

    def emit(self, event: dict[str, Any]) -> None:
        self.out.write(json.dumps({"time": _now(), **event}, sort_keys=False) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class Collect:
    """Keeps every event (tests, benchmarks)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


class RichProgress:
    """A progress bar on stderr: done / running / failed counts, elapsed and ETA; messages above it."""

    def __init__(self, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console or Console(stderr=True, markup=False, highlight=False)  # reasons are user text
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[green]{task.fields[done]} done[/] · [cyan]{task.fields[running]} running[/] · "
                       "[red]{task.fields[failed]} failed[/]"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False, redirect_stdout=False, redirect_stderr=False,
        )
        self.task = None
        self.counts = {"done": 0, "running": 0, "failed": 0}

    def _update(self, advance: int = 0) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=advance, **self.counts)

    def emit(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "run-started":
            if event.get("to_run", 0):
                self.progress.start()
                self.task = self.progress.add_task("hpt apply", total=event["to_run"], **self.counts)
        elif kind == "trials-added":   # an adaptive search decided a round: the same bar grows
            if self.task is not None:
                self.progress.update(self.task, total=(self.progress.tasks[0].total or 0) + len(event["trial_ids"]))
        elif kind in ("trial-started", "trial-adopted"):
            self.counts["running"] += 1
            self._update()
        elif kind == "trial-finished":
            self.counts["running"] -= 1
            self.counts["done"] += 1
            self._update(1)
        elif kind == "trial-failed":
            self.counts["running"] -= 1
            self.counts["failed"] += 1
            self._update(1)
            self.console.print(Text.assemble(("failed", "red"), f" {event['trial_id']}: {event.get('reason', '')}"),
                               soft_wrap=True)
        elif kind in ("trial-retrying", "trial-cancelled", "trial-left-running"):
            self.counts["running"] -= 1
            self._update()
            if kind == "trial-retrying":
                self.console.print(Text.assemble(("retrying", "yellow"), f" {event['trial_id']} (attempt {event['attempt']}) in "
                                                 f"{event['delay_s']:.0f} s: {event.get('reason', '')}"), soft_wrap=True)
        elif kind in ("message", "target-reached"):
            self.console.print(event["text"], highlight=False, soft_wrap=True)
        elif kind == "run-finished":
            self.close()
            self.console.print(event["summary"], highlight=False, soft_wrap=True)
            self.console.print(f"results: {event['results']} (results.csv, rows/, models/, logs/)", highlight=False,
                               soft_wrap=True)

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()
            self.task = None


class PlainLines:
    """No terminal: one short timestamped line per event that matters, flushed at once, never a bar.

    trial started / finished (with its time) / failed / retrying / adopted / cancelled, a round decided
    (`line()`), messages, and a summary (done / running / failed of the total, elapsed, ETA from the pace
    so far) at most every `every_s` seconds: after an event once that long has passed, and from a timer
    while nothing happens (a long trial), so a log of hours says the run is alive.
    """

    def __init__(self, out: TextIO | None = None, every_s: float = SUMMARY_EVERY_S):
        self.out = out
        self.every_s = every_s
        self.counts = {"done": 0, "running": 0, "failed": 0}
        self.total = 0
        self.started: dict[str, float] = {}
        self.t0: float | None = None
        self.last_summary = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def line(self, text: str) -> None:
        out = self.out or sys.stderr   # looked up at write time: a test harness may swap sys.stderr
        with self._lock:
            out.write(timestamped(text) + "\n")
            out.flush()

    def summary(self) -> str:
        c = self.counts
        finished = c["done"] + c["failed"]
        text = f"progress: {finished}/{self.total} finished ({c['done']} done, {c['failed']} failed), {c['running']} running"
        if self.t0 is not None:
            elapsed = time.monotonic() - self.t0
            text += f", elapsed {_duration(elapsed)}"
            left = self.total - finished
            if finished and left > 0:
                text += f", ETA {_duration(elapsed / finished * left)}"
        return text

    def _summarise(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_summary >= self.every_s:
            self.last_summary = now
            self.line(self.summary())

    def _tick(self) -> None:
        while not self._stop.wait(min(self.every_s, 5.0)):
            if self.t0 is not None and time.monotonic() - self.last_summary >= self.every_s:
                self._summarise()

    def emit(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        tid = event.get("trial_id", "")
        c = self.counts
        if kind == "run-started":
            self.total = event.get("to_run", 0)
            self.t0 = self.last_summary = time.monotonic()
            parts = [f"{event.get('to_run', 0)} of {event.get('total', 0)} trial(s) to run"]
            for key, what in (("already_done", "done already"), ("kept_failed", "failed and kept"), ("adopted", "adopted")):
                if event.get(key):
                    parts.append(f"{event[key]} {what}")
            self.line(f"run started on {event.get('backend')} (parallel {event.get('parallel')}): {', '.join(parts)}; "
                      f"results → {event.get('results')}")
            if self.total and self._timer is None:
                self._timer = threading.Thread(target=self._tick, name="hpt-progress", daemon=True)
                self._timer.start()
            return
        if kind in ("trial-started", "trial-adopted"):
            self.started[tid] = time.monotonic()
            verb = "started" if kind == "trial-started" else "adopted (still running)"
            self.line(f"{verb} {tid} (attempt {event.get('attempt', 1)})")
        elif kind == "trial-finished":
            c["done"] += 1
            began = self.started.pop(tid, None)
            took = f" in {time.monotonic() - began:.1f} s" if began is not None else ""
            self.line(f"finished {tid}{took} ({c['done'] + c['failed']}/{self.total})")
        elif kind == "trial-failed":
            c["failed"] += 1
            self.started.pop(tid, None)
            self.line(f"failed {tid}: {event.get('reason', '')} ({c['done'] + c['failed']}/{self.total})")
        elif kind in ("trial-retrying", "trial-cancelled", "trial-left-running"):
            self.started.pop(tid, None)
            if kind == "trial-retrying":
                self.line(f"retrying {tid} (attempt {event['attempt']}) in {event['delay_s']:.0f} s: {event.get('reason', '')}")
            elif kind == "trial-cancelled":
                self.line(f"cancelled {tid}: {event.get('reason', '')}")
            else:
                self.line(f"left running {tid}")
        elif kind == "trials-added":
            self.total += len(event["trial_ids"])
            self.line(f"{len(event['trial_ids'])} trial(s) added by the search ({self.total} to run)")
        elif kind == "trial-claimed-elsewhere":
            self.line(f"waiting: {tid} is run by another apply ({event.get('owner', '?')})")
        elif kind in ("message", "target-reached"):
            self.line(event["text"])
        elif kind == "run-finished":
            self.close()
            self.line(f"run finished: {event['summary']}")
            self.line(f"results: {event['results']} (results.csv, rows/, models/, logs/)")
            return
        else:
            return
        c["running"] = len(self.started)
        self._summarise()

    def close(self) -> None:
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=1.0)
        self._timer = None
