"""What the scheduling loop tells the world: one event per thing that happened.

Events are plain dicts with an `event` name (trial-started, trial-finished, trial-failed, trial-retrying,
trial-adopted, trial-cancelled, trial-left-running, trials-added (an adaptive search's new round), message,
run-started, run-finished). Two reporters render them: JSON
lines on stdout (`--output json`, for CI logs) and a rich progress bar with counts and an ETA on stderr.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol, TextIO

from rich.text import Text


class Reporter(Protocol):
    def emit(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
        elif kind == "message":
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
