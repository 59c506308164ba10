"""The scheduling loop: run a plan's trials on any Backend, resumably.

The results store is the source of truth: a trial is done when its row is there. So the loop
1. lists the store and skips trials whose row says done (and, with skip_failed, those that failed);
2. adopts trials an earlier `hpt apply` left running (crash, kill -9) instead of starting them again;
3. submits the rest with bounded concurrency, a per-trial timeout, and retries with exponential
   backoff for failures that may be transient (a trial killed from outside, a backend hiccup, a
   trainer that died without writing its row);
4. after each finished trial, copies its log to logs/<id>.log and reads its row (one file: the rows
   already in the store are read once at the start), and refreshes results.csv and the row index at a
   pace that keeps their cost a small share of the run (hpt.executor.publish);
5. for an adaptive search, asks its `grow` hook (after every finished trial, and once at the start)
   whether the finished rows decide new trials; the hook records them in the plan folder first, and
   the loop reads them from there and queues them. So a whole adaptive search is one run: one
   progress bar, one runs/ document that says finished only at the end.

A failed trial's row is the only thing ever replaced: before a failed trial is run again, its row
is moved aside to rows-failed/<id>.<n>.csv (copy first, then delete, so a crash in between loses
nothing). The loop never interprets hyperparameters.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Protocol, Sequence

from hpt.executor.backend import Backend, Phase, Submission, TrialStatus
from hpt.executor.events import Reporter
from hpt.executor.plan import LoadedPlan, queue_order
from hpt.executor.publish import ResultsPublisher
from hpt.executor.status import RUNS
from hpt.executor.target import Target
from hpt.store import EXIT_STORE_UNAVAILABLE, LOGS, AlreadyExists, Store, StoreUnavailable, row_key
from hpt.store.claims import DEFAULT_LEASE_S, Claim, Claims
from hpt.store.ownership import DEAD, EXIT_NOT_OWNER, MAX_LEASE_S, SKEWED, Ticket, latest, owner_state
from hpt.store.rows import check_row
from hpt.schemas.files import NOT_REGULAR, NotRegularFile
from hpt.schemas.protocol import EpochReport
from hpt.schemas.row import STATUS_DONE, STATUS_FAILED, STATUS_STOPPED, build_row, row_csv
from hpt.schemas.trainer import RECOMPILE, log_collected
from hpt.schemas.stopping import (STOPS, VERDICTS, StopRecord, curve_bytes, curve_key, ended_in, parse_curve, reports_in,
                                  stop_key, verdict_bytes, verdict_key)

FINISHED = (STATUS_DONE, STATUS_STOPPED)   # a result: never run again (a stopped trial's row is its last report)

log = logging.getLogger(__name__)


def _best_effort(what: str, fn, *args) -> None:
    """Housekeeping that must never stop a run or lose a result (a release, a cancel, a log, a status
    hint): a failure is logged, not raised."""
    try:
        fn(*args)
    except StoreUnavailable:
        raise  # not housekeeping any more: the store is gone past its deadline, and the run stops
    except Exception:
        log.warning("could not %s", what, exc_info=log.isEnabledFor(logging.DEBUG))

ROWS_FAILED = "rows-failed/"
MAX_BACKOFF_S = 300.0


class Stopper(Protocol):
    """In-trial stopping's extension point (hpt/api.py builds it from the plan's stopping rule,
    hpt.compiler.stopping): given the per-step reports of the finished trials and of the running ones,
    the running trials to stop now (trial id → StopRecord). A pure function of the reports: the same
    reports give the same stops."""

    def __call__(self, finished: Mapping[str, list[EpochReport]],
                 running: Mapping[str, list[EpochReport]]) -> dict[str, StopRecord]: ...


class Grow(Protocol):
    """An adaptive search's extension point (hpt/api.py builds it from hpt.compiler.rounds): given every
    row in the store and the run's parallelism, record the trials the finished rows now decide (their
    manifests and plan.json written before it returns, so a decision exists before its trials start) and
    return their ids; [] when there is nothing to decide now."""

    def __call__(self, rows: Mapping[str, Mapping[str, str]], parallel: int) -> list[str]: ...


class LogReader(Protocol):
    """Executor-side metric collection's extension point (hpt/api.py hands it hpt.trainer.fromlog.read_log): for
    a trial whose image has no hpt (the manifest's trainer.collect "log"), its per-step reports, final metrics
    and a problem ("" if none) from its log; the executor builds the row (schemas/row.build_row)."""

    def __call__(self, manifest: Mapping[str, Any], text: str) -> tuple[list[EpochReport], dict[str, float], str]: ...


@dataclass
class RunOptions:
    parallel: int | None = None          # None: backend.capacity()
    retries: int = 2                     # extra attempts for transient failures
    timeout_s: float | None = None       # per attempt
    max_failures: int | None = None      # stop the run after this many failed trials
    skip_failed: bool = False            # keep failed rows instead of retrying them
    backoff_s: float = 5.0               # first retry delay; doubles each attempt
    poll_interval_s: float | None = None  # None: the backend's `poll_interval` or 0.2 s
    resume_hint: str = ""                # the command that resumes this run (for messages)
    owner: str = ""                      # who claims trials in the store (one plan copy on one machine); "" = this process
    claim_lease_s: float = DEFAULT_LEASE_S  # a claim not renewed for this long is taken over by another apply


@dataclass
class RunResult:
    total: int = 0
    done: int = 0            # done in this run
    failed: int = 0          # failed in this run (after retries)
    already_done: int = 0    # skipped: their row said done
    kept_failed: int = 0     # skipped with skip_failed: their row said failed
    adopted: int = 0
    retried: int = 0
    not_run: int = 0         # left pending: stopped or interrupted
    stopped: str = ""        # why the run stopped early ("" if it did not)
    interrupted: bool = False
    left_running: int = 0    # interrupted, on a backend whose trials outlive apply
    early_stopped: int = 0   # ended by an in-trial stopping rule (rows of status stopped), this run or before
    target_reached: str = ""  # the plan's search.target was reached (by which trial): no new trial started
    skipped: int = 0         # never started because the target was reached
    failures: dict[str, str] = field(default_factory=dict)  # trial id → reason

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.failed or self.kept_failed or self.not_run or self.done + self.already_done + self.skipped < self.total:
            return 1  # an apply that did not run every trial to done never says 0
        return 0

    def counts(self) -> dict[str, int]:
        return {"total": self.total, "done": self.done, "failed": self.failed, "already_done": self.already_done,
                "kept_failed": self.kept_failed, "adopted": self.adopted, "retried": self.retried, "not_run": self.not_run,
                "left_running": self.left_running, "early_stopped": self.early_stopped, "skipped": self.skipped} \
            | ({"target_reached": self.target_reached} if self.target_reached else {})


@dataclass
class _Running:
    sub: Submission
    handle: Any
    attempt: int
    started: float            # time.monotonic()
    started_at: str           # wall clock, for a failed row
    adopted: bool = False
    timed_out: float | None = None
    row_seen: bool = False    # its row is in the store already (the process may still be exiting)


def _own_cpu_s() -> float:
    """CPU seconds this process used (not its trials): what apply itself costs the machine."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    except ImportError:  # not POSIX
        return 0.0


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _last_lines(text: str, n: int = 3, width: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[-width:]


class Scheduler:
    def __init__(self, plan: LoadedPlan, backend: Backend, store: Store, options: RunOptions, reporter: Reporter,
                 grow: Grow | None = None, stopper: Stopper | None = None, log_reader: LogReader | None = None):
        self.plan = plan
        self.log_reader = log_reader                              # trials with no hpt inside: their rows are ours
        self._seen_logs: dict[str, str] = {}                      # their logs as a stop decision read them
        self.grow = grow
        self.stopper = stopper
        self.target = Target.of(plan.plan.spec)                  # search.target: reached, no new trial starts
        self.curves: dict[str, list[EpochReport]] = {}            # finished trials' reports (stopping only)
        self.stops: set[str] = set()                             # trials with a stop record
        self.verdicts: set[str] = set()                          # trials judged to their end, not stopped
        self._last_stop_check = 0.0
        self._grow_due = grow is not None                         # a trial reached its outcome since the last ask
        self.backend = backend
        self.store = store
        self.opt = options
        self.report = reporter
        self.publisher = ResultsPublisher(store)
        self.result = RunResult(total=len(plan.submissions))
        self.running: dict[str, _Running] = {}
        self.queue: deque[tuple[Submission, int]] = deque()      # (submission, attempt)
        self.waiting: list[tuple[float, Submission, int]] = []   # retries: (not before, sub, attempt)
        self.attempt_logs: dict[str, list[str]] = {}
        self.failed_rows: set[str] = set()                       # failed in the store, to move aside before running
        # Claims in the store: no two applies anywhere run one trial at once (see hpt.store.claims).
        self.claims = Claims(store, options.owner or f"{socket.gethostname()}:pid{os.getpid()}", options.claim_lease_s)
        self.held: dict[str, Claim] = {}                          # claimed by this apply: running or waiting to retry
        self.elsewhere: dict[str, tuple[float, Submission, int]] = {}  # claimed by another apply: (next look, sub, attempt)
        self.watched: set[str] = set()                           # trials ever found claimed by another apply
        self.left_running: set[str] = set()                      # interrupted, left running (their claims stay)
        self.ended_tokens: set[str] = set()                      # tickets of launches seen ending (their owners are gone)
        self.owned_elsewhere: set[str] = set()                   # trials found owned by a process no apply of ours watches
        self.skewed: set[str] = set()                            # owned under a lease no clock can keep: left, said once
        self._last_renew = time.monotonic()
        self._look_every = 1.0 if "://" not in store.uri else 5.0  # how often to look at trials claimed elsewhere
        self._stop_signal: str | None = None
        self._runs_dirty = True
        self._last_row_check = 0.0

    # --- helpers ---------------------------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        self.report.emit({"event": event, "experiment_id": self.plan.experiment_id, **fields})

    def _row(self, trial_id: str) -> dict[str, str] | None:
        return self.publisher.note(trial_id)  # one read of its file; the publisher keeps it (results.csv, index)

    def _move_failed_row_aside(self, trial_id: str) -> None:
        """Copy rows/<id>.csv to rows-failed/<id>.<n>.csv (create-only), then delete it."""
        try:
            data = self.store.get(row_key(trial_id))
        except KeyError:
            return
        except NotRegularFile:  # a FIFO or device under the row's name: what is moved aside says so
            data = f"{NOT_REGULAR}\n".encode()
        row = check_row(trial_id, data, row_key(trial_id))  # a damaged file is moved aside like a failed row
        if row.get("status") in FINISHED:
            return  # never touch a done or stopped row (another apply finished it meanwhile)
        taken = {k for k in self.store.list(f"{ROWS_FAILED}{trial_id}.")}
        n = len(taken) + 1
        while True:
            key = f"{ROWS_FAILED}{trial_id}.{n}.csv"
            try:
                self.store.put_once(key, data)
                break
            except AlreadyExists:
                n += 1
        self.store.delete(row_key(trial_id))
        self.publisher.forget([trial_id])

    def _write_runs(self, finished: bool = False) -> None:
        doc = {"experiment_id": self.plan.experiment_id, "backend": self.backend.name,
               "host": socket.gethostname(), "pid": os.getpid(), "updated_at": _utc(), "finished": finished,
               "running": {tid: {"attempt": r.attempt, "started_at": r.started_at} for tid, r in self.running.items()}}
        _best_effort("write the run's status hint", self.store.put, f"{RUNS}{self.plan.experiment_id}.json",
                     json.dumps(doc, indent=1).encode())
        self._runs_dirty = False

    def _signal(self, signum, _frame) -> None:
        if self._stop_signal is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for a clean cancel
        self._stop_signal = signal.Signals(signum).name

    # --- phases ----------------------------------------------------------------------------------
    def _may_run(self, row: Mapping[str, str] | None) -> bool:
        """Whether a trial with this row (None: none yet) is one this apply runs."""
        return row is None or (row.get("status") not in FINISHED and not self.opt.skip_failed)

    def _to_check(self) -> Sequence[Submission]:
        """What preflight checks: the trials this apply may run as the rows stand (a finished trial's
        manifest is not even parsed), all of an adaptive plan's (its capacity decides its rounds' size), one
        when none is left (what a backend checks of any plan: its cluster, its results location)."""
        subs = self.plan.submissions
        if self.grow is not None:
            return subs
        rows = self.publisher.current()
        left = [subs[i] for i, tid in enumerate(self.plan.trial_ids) if self._may_run(rows.get(tid))]
        return left or subs[:1]

    def _classify(self) -> list[Submission]:
        rows = self.publisher.current()
        subs = self.plan.submissions
        to_run = []
        for i, tid in enumerate(self.plan.trial_ids):   # ids: a trial not run is never parsed (LoadedPlan)
            row = rows.get(tid)
            if row is None:
                to_run.append(subs[i])
            elif row.get("status") in FINISHED:
                self.result.already_done += 1
                self.result.early_stopped += row.get("status") == STATUS_STOPPED
            elif self.opt.skip_failed:
                self.result.kept_failed += 1
                self.result.failures[tid] = row.get("reason", "") or "failed"
            else:
                self.failed_rows.add(tid)
                to_run.append(subs[i])
        return to_run

    def _submit(self, sub: Submission, attempt: int) -> None:
        tid = sub.trial_id
        if not self._claim(sub, attempt):
            return  # another apply runs it now: watched until its row appears or its claim expires
        if tid in self.failed_rows:
            self._move_failed_row_aside(tid)
            self.failed_rows.discard(tid)
        elif self.store.exists(row_key(tid)):
            # Finished meanwhile (another apply, or a trial that outlived a crash and was not adopted).
            self._release_claim(tid)
            row = self._row(tid) or {}
            self._record_existing(sub, row, attempt)
            return
        ticket = self._ticket(sub, attempt)
        if ticket is None:
            return  # a live process owns it (watched), or its lease is skewed (left, said once)
        job = replace(sub, timeout_s=self.opt.timeout_s, attempt=attempt, ticket=str(ticket), judged=self.stopper is not None)
        handle = self.backend.submit(job)
        self.running[tid] = _Running(job, handle, attempt, time.monotonic(), _utc())
        self._runs_dirty = True
        self.emit("trial-started", trial_id=tid, attempt=attempt)

    def _ticket(self, sub: Submission, attempt: int) -> Ticket | None:
        """The ownership ticket for a new launch (hpt.store.ownership): the fence after the latest, once its
        owner is gone; None while that owner may still train (watched like a trial claimed elsewhere)."""
        tid = sub.trial_id
        record = latest(self.store, tid)
        if record is None:
            return Ticket.new(1)
        state = owner_state(record, time.time(), self.ended_tokens)
        if state == DEAD:
            return Ticket.new(record.fence + 1)
        if state == SKEWED:
            if tid not in self.skewed:
                self.skewed.add(tid)
                self.emit("message", text=(
                    f"{tid}: owned by {record.who}, whose lease ends {record.expires - time.time():.0f} s from now, "
                    f"more than the {MAX_LEASE_S:g} s the protocol allows: a skewed clock; left not run. To take "
                    f"it over, stop that process and delete {self.store.url(f'owners/{tid}/')}, then re-apply"))
            return None
        if tid not in self.owned_elsewhere:  # say it once, not at every look
            self.owned_elsewhere.add(tid)
            self.emit("message", text=f"{tid}: its process ({record.who}, fence {record.fence}) still runs it; "
                                      "waiting for its row instead of starting it again")
        self.elsewhere[tid] = (time.monotonic() + self._look_every, sub, attempt)
        return None

    def _claim(self, sub: Submission, attempt: int) -> bool:
        """Claim the trial in the store; False (and watched) when another live apply holds it."""
        tid = sub.trial_id
        if tid in self.held:
            return True
        got = self.claims.acquire(tid)
        if isinstance(got, Claim):
            self.held[tid] = got
            return True
        if got.expires > time.time() + MAX_LEASE_S:  # no lease is that long: the owner's clock is skewed
            if tid not in self.skewed:
                self.skewed.add(tid)
                self.emit("message", text=(
                    f"{tid}: claimed by {got.owner or '?'}, whose lease ends {got.expires - time.time():.0f} s from "
                    f"now, more than the {MAX_LEASE_S:g} s the protocol allows: a skewed clock; left not run. To take "
                    f"it over, stop that apply and delete {self.store.url(f'claims/{tid}/')}, then re-apply"))
            return False
        if tid not in self.watched:  # say it once, not at every look
            self.watched.add(tid)
            self.emit("trial-claimed-elsewhere", trial_id=tid, owner=got.owner,
                      lease_left_s=round(got.expires - time.time(), 1))
        self.elsewhere[tid] = (time.monotonic() + self._look_every, sub, attempt)
        return False

    def _release_claim(self, tid: str) -> None:
        claim = self.held.pop(tid, None)
        if claim is not None:
            _best_effort(f"release the claim on {tid}", self.claims.release, claim)

    def _look_elsewhere(self) -> None:
        """Trials another apply holds: done when their row appears; ours to run once their claim expires."""
        now = time.monotonic()
        for tid, (when, sub, attempt) in list(self.elsewhere.items()):
            if when > now:
                continue
            del self.elsewhere[tid]
            row = self._row(tid)
            if row is not None and (row.get("status") in FINISHED or tid not in self.failed_rows):
                self.failed_rows.discard(tid)
                self._record_existing(sub, row, attempt)
            else:
                self.queue.appendleft((sub, attempt))  # _submit claims it again (or goes on watching)

    def _renew_claims(self) -> None:
        if time.monotonic() - self._last_renew < self.opt.claim_lease_s / 4:
            return
        self._last_renew = time.monotonic()
        for tid, claim in list(self.held.items()):
            if not self.claims.renew(claim):
                self.held.pop(tid)
                self.emit("message", text=f"{tid}: another apply took the trial over (this one did not renew its "
                                          f"claim within {self.opt.claim_lease_s:g} s); its row decides")

    def _check_target(self, tid: str, row: Mapping[str, str] | None) -> None:
        """A finished row that reaches the plan's target ends the search: the queued trials are skipped (the
        running ones finish, as W&B's sweep and Katib's Experiment let them)."""
        if self.target is None or self.result.target_reached or row is None:
            return
        value = self.target.reached(row)
        if value is not None:
            self._reach_target(tid, value)

    def _reach_target(self, tid: str, value: float, before: bool = False) -> None:
        self.result.target_reached = self.target.says(tid, value)  # type: ignore[union-attr]
        skipped = [sub.trial_id for sub, _ in self.queue] + [sub.trial_id for _, sub, _ in self.waiting]
        for skipped_id in skipped:
            self._release_claim(skipped_id)
        self.queue.clear()
        self.waiting.clear()
        self.result.skipped += len(skipped)
        self.emit("target-reached", trial_id=tid, value=value, target=self.target.value,  # type: ignore[union-attr]
                  skipped=len(skipped), text=f"{self.result.target_reached}" + (" (in an earlier run)" if before else "")
                                            + ": no new trial starts" + (f" ({len(skipped)} not started)" if skipped else ""))

    def _record_existing(self, sub: Submission, row: dict[str, str], attempt: int) -> None:
        self._grow_due = self.grow is not None
        if row.get("status") in FINISHED:
            self.result.done += 1
            self.result.early_stopped += row.get("status") == STATUS_STOPPED
            self._keep_curve(sub.trial_id, "")
            self.emit("trial-finished", trial_id=sub.trial_id, attempt=attempt, status=row.get("status"))
        else:
            self._count_failure(sub.trial_id, row.get("reason", "") or "failed", attempt)
        self._check_target(sub.trial_id, row)

    def _count_failure(self, tid: str, reason: str, attempt: int) -> None:
        self._grow_due = self.grow is not None
        self.result.failed += 1
        self.result.failures[tid] = reason
        self.emit("trial-failed", trial_id=tid, attempt=attempt, reason=reason)
        limit = self.opt.max_failures
        if limit is not None and self.result.failed >= limit and not self.result.stopped:
            self.result.stopped = f"stopped after {self.result.failed} failed trial(s) (--max-failures {limit})"

    def _finish(self, run: _Running, status: TrialStatus) -> None:
        """A trial ended: keep its log, decide done / failed / retry."""
        tid = run.sub.trial_id
        del self.running[tid]
        self._runs_dirty = True
        try:
            text = self.backend.logs(run.handle)
        except Exception as err:  # a log we cannot read must not lose the result
            text = f"(could not read the trial's log: {err})\n"
        attempts = self.attempt_logs.setdefault(tid, [])
        attempts.append(f"===== {tid} attempt {run.attempt} ({status.phase.value}{': ' + status.reason if status.reason else ''}) =====\n{text}")
        def store_log() -> None:
            # An adopted trial's output may be gone (its first apply released it): keep what is stored.
            if text.strip() or not (run.adopted and self.store.exists(f"{LOGS}{tid}.log")):
                self.store.put(f"{LOGS}{tid}.log", "\n".join(attempts).encode("utf-8"))

        _best_effort(f"store the log of {tid}", store_log)
        # Decided before the container goes: a trial whose row apply builds from its log (no hpt inside) must
        # leave its container behind until the row exists, so an apply killed in between adopts it again.
        retried = self._decide(run, status, text)
        _best_effort(f"release {tid}", self.backend.release, run.handle)
        if not retried:
            self._release_claim(tid)  # over: a row, or recorded failed (a retry keeps the claim)

    def _decide(self, run: _Running, status: TrialStatus, text: str) -> bool:
        """Record the ended trial's outcome; True if it will be retried."""
        tid, sub = run.sub.trial_id, run.sub
        if sub.ticket:  # whatever it was, that launch is over: an owner with its token is gone
            self.ended_tokens.add(sub.ticket.partition(":")[2])
        row = self._row(tid)
        if row is None and status.exit_code == EXIT_NOT_OWNER:
            # Another copy (launched by an apply that died) owns it: watch that one instead of running it again.
            # A new attempt number all the same, so a backend that names its runs by attempt (k8s Jobs) never
            # finds this finished one under the name of the next.
            self.queue.appendleft((sub, run.attempt + 1))
            return True
        if row is not None:
            if row.get("status") in FINISHED:
                self._grow_due = self.grow is not None
                self.result.done += 1
                self.result.early_stopped += row.get("status") == STATUS_STOPPED
                self._keep_curve(tid, text)
                self.emit("trial-finished", trial_id=tid, attempt=run.attempt, status=row.get("status"),
                          seconds=round(time.monotonic() - run.started, 3))
            else:  # the trainer recorded its own failure: a result, not worth retrying
                self._count_failure(tid, row.get("reason", "") or status.reason or "failed", run.attempt)
            self._check_target(tid, row)
            return False

        if run.timed_out is None and self._collected_row(run, status, text):
            return False
        if run.timed_out is not None:
            reason = f"timed out after {run.timed_out:g} s"
            transient = False
        elif status.phase == Phase.SUCCEEDED:
            reason, transient = "the trainer exited 0 without writing its row", True
        else:
            reason = status.reason or "failed"
            tail = _last_lines(text)
            if tail and not status.transient:
                reason = f"{reason}: {tail}"
            # No row and killed by a signal (OOM killer, a user, a lost node), or the trainer gave up on an
            # unreachable store: nothing was recorded, so another attempt may well succeed. The backend
            # flags its own hiccups.
            transient = status.transient or (status.exit_code is not None and status.exit_code < 0) \
                or status.exit_code == EXIT_STORE_UNAVAILABLE
        if transient and run.attempt <= self.opt.retries and not self.result.stopped and self._stop_signal is None:
            delay = min(self.opt.backoff_s * 2 ** (run.attempt - 1), MAX_BACKOFF_S)
            self.waiting.append((time.monotonic() + delay, sub, run.attempt + 1))
            self.result.retried += 1
            self.emit("trial-retrying", trial_id=tid, attempt=run.attempt + 1, delay_s=delay, reason=reason)
            return True
        if transient and run.attempt > 1:
            reason = f"{reason} (after {run.attempt} attempts)"
        try:
            self.store.put_once(row_key(tid), row_csv(build_row(sub.manifest, status=STATUS_FAILED, reason=reason,
                                                                   started_at=run.started_at, finished_at=_utc())).encode("utf-8"))
            self.publisher.note(tid)
        except AlreadyExists:  # the trainer got there at the last moment: its row wins
            row = self._row(tid) or {}
            self._record_existing(sub, row, run.attempt)
            return False
        self._count_failure(tid, reason, run.attempt)
        return False

    def _log_collected(self, sub: Submission) -> bool:
        return self.log_reader is not None and log_collected(sub.manifest.trainer)

    def _collected_row(self, run: _Running, status: TrialStatus, text: str) -> bool:
        """A trial whose image has no hpt ended without a row: build it from its log (executor-side
        collection). A stop record's step truncates it (status stopped); a program that failed is left to
        the usual path (its reason, retries). True when a row was written (or another one won)."""
        sub, tid = run.sub, run.sub.trial_id
        if not self._log_collected(sub):
            return False
        record = self._stop_record(tid)
        if record is None and status.phase != Phase.SUCCEEDED:
            return False
        manifest = sub.manifest.to_dict()
        seen = self._seen_logs.pop(tid, "")
        reports, metrics, problem = self.log_reader(manifest, text if len(text) >= len(seen) else seen)  # type: ignore[misc]
        objective = sub.manifest.objective["metric"]
        outcome, reason = STATUS_DONE, ""
        if record is not None:
            reports = [r for r in reports if r.epoch <= record.step]
            outcome, reason = STATUS_STOPPED, f"stopped at step {record.step} ({record.reason})"
            metrics = dict(reports[-1].values) if reports else {}
            if not reports:
                outcome, reason = STATUS_FAILED, f"stopped at step {record.step} before any report at or before it"
        elif problem:
            outcome, reason = STATUS_FAILED, problem
        elif objective not in metrics:
            outcome, reason = STATUS_FAILED, (f"the program's log has no {objective!r} (the objective) by its collector "
                                              f"({(sub.manifest.trainer.get('metrics_from') or {}).get('format', 'hpt')}); "
                                              f"it reported {', '.join(sorted(metrics)) or 'nothing'}")
        if outcome != STATUS_FAILED:
            if self.stopper is not None:   # what a later apply's stopping rule reads of this trial
                _best_effort(f"store the curve of {tid}", self.store.put, curve_key(tid), curve_bytes(reports))
        row = build_row(sub.manifest, status=outcome, reason=reason, metrics=metrics if outcome != STATUS_FAILED else None,
                        started_at=run.started_at, finished_at=_utc())
        try:
            self.store.put_once(row_key(tid), row_csv(row).encode("utf-8"))
        except AlreadyExists:
            pass   # a row of another apply's copy of the trial won: it stands
        self._record_existing(sub, self._row(tid) or {}, run.attempt)
        return True

    def _stop_record(self, tid: str) -> StopRecord | None:
        if tid not in self.stops:
            return None
        try:
            return StopRecord.parse(self.store.get(stop_key(tid)), tid)
        except KeyError:
            return None

    def _rows_appeared(self, interval: float) -> bool:
        now = time.monotonic()
        if now - self._last_row_check < interval or not self.running:
            return False
        self._last_row_check = now
        appeared = False
        for tid, run in self.running.items():
            if not run.row_seen and self.store.exists(row_key(tid)):
                run.row_seen = appeared = True
                self._check_target(tid, self.publisher.note(tid))
        return appeared

    def _interrupt(self, why: str) -> None:
        """Ctrl-C / SIGTERM: cancel running trials, unless the backend's trials are meant to outlive
        apply (k8s without --cancel-on-exit: the Jobs keep running, a re-apply collects them)."""
        if self.backend.cancel_on_interrupt:
            self._cancel_all(why)
            return
        for tid, run in list(self.running.items()):
            self.result.left_running += 1
            self.left_running.add(tid)  # its claim stays: it lapses unless a re-apply of this plan renews it
            self.emit("trial-left-running", trial_id=tid, attempt=run.attempt)
        self.running.clear()
        self._runs_dirty = True

    def _cancel_all(self, why: str) -> None:
        for tid, run in list(self.running.items()):
            _best_effort(f"cancel {tid}", self.backend.cancel, run.handle)
            _best_effort(f"release {tid}", self.backend.release, run.handle)
            del self.running[tid]
            self._release_claim(tid)
            self.emit("trial-cancelled", trial_id=tid, attempt=run.attempt, reason=why)
        self._runs_dirty = True

    def _keep_log_of_finished(self, tid: str, handle) -> None:
        """A trial that finished while no apply watched it (a crash): store its output before the
        backend forgets it, unless a log is already there."""
        def keep() -> None:
            if not self.store.exists(f"{LOGS}{tid}.log"):
                text = self.backend.logs(handle)
                if text.strip():
                    self.store.put(f"{LOGS}{tid}.log", text.encode("utf-8"))

        _best_effort(f"keep the log of {tid}", keep)

    # --- in-trial stopping ----------------------------------------------------------------------
    def _keep_curve(self, tid: str, text: str) -> None:
        """A finished trial's reports, for the stopping rule: what the trial stored (curves/<id>.json),
        else what its output showed."""
        if self.stopper is None:
            return
        try:
            reports = parse_curve(self.store.get(curve_key(tid)))
        except KeyError:
            reports = reports_in(text)
        self.curves[tid] = reports

    def _load_stopping_state(self) -> None:
        """At the start: the finished trials' curves and the stops already recorded (a re-apply decides
        nothing twice)."""
        if self.stopper is None:
            return
        rows = self.publisher.sync()
        for tid in self.plan.trial_ids:
            if rows.get(tid, {}).get("status") in FINISHED:
                self._keep_curve(tid, "")
        self.stops = {key[len(STOPS):-len(".json")] for key in self.store.list(STOPS) if key.endswith(".json")}
        self.verdicts = {key[len(VERDICTS):-len(".json")] for key in self.store.list(VERDICTS) if key.endswith(".json")}

    def _check_stops(self) -> None:
        """Read every running trial's reports from its output so far and record the stops the rule now
        decides (the record first: the trial obeys it at its next step)."""
        now = time.monotonic()
        # every poll of the backend at most (a cluster's pod logs are API calls)
        if self.stopper is None or now - self._last_stop_check < max(0.2, self.backend.poll_interval) or not self.running:
            return
        self._last_stop_check = now
        running: dict[str, list[EpochReport]] = {}
        ended: dict[str, int] = {}   # trials that printed hpt:end: every report is in, they await the verdict
        for tid, run in self.running.items():
            try:
                text = self.backend.logs(run.handle)
                if self._log_collected(run.sub):
                    self._seen_logs[tid] = text   # a stopped Job's pod may be gone when its row is built
                    running[tid] = self.log_reader(run.sub.manifest.to_dict(), text)[0]  # type: ignore[misc]
                else:
                    running[tid] = reports_in(text)
            except Exception:  # a log we cannot read now is read at the next look
                continue
            end = ended_in(text)
            if end is not None:
                ended[tid] = end
        decided = self.stopper(self.curves, running)
        for tid, record in sorted(decided.items()):
            if tid in self.stops or tid not in self.running:
                continue
            try:
                self.store.put_once(stop_key(tid), record.to_bytes())
            except AlreadyExists:
                pass   # decided before (an earlier apply): the stored record stands
            self.stops.add(tid)
            self.emit("trial-stopping", trial_id=tid, step=record.step, rule=record.rule, reason=record.reason)
            if self._log_collected(self.running[tid].sub):
                # no hpt inside to obey the record: end it now (it has reported the step; its row is cut there)
                _best_effort(f"stop {tid}", self.backend.cancel, self.running[tid].handle)
        for tid, step in sorted(ended.items()):   # judged to its end and not stopped: the verdict is none
            if tid in self.stops or tid in decided or tid in self.verdicts:
                continue
            try:
                self.store.put_once(verdict_key(tid), verdict_bytes(tid, step))
            except AlreadyExists:
                pass
            self.verdicts.add(tid)

    def _ask_grow(self, parallel: int) -> list[Submission]:
        """New trials the adaptive search decided from the rows now in the store (none once the run is
        stopped or interrupted: a decision must not outrun the trials that would run it)."""
        self._grow_due = False
        if self.grow is None or self.result.stopped or self._stop_signal is not None or self.result.target_reached:
            return []
        added = self.grow(self.publisher.current(), parallel)
        if not added:
            return []
        self.plan = self.plan.grown(added)
        self._order = queue_order(self.plan.plan)
        self.result.total = len(self.plan.submissions)
        subs = self.plan.submissions[-len(added):]
        self.emit("trials-added", trial_ids=added, total=self.result.total)
        return subs

    def _enqueue(self, subs: list[Submission]) -> None:
        """Queue new trials, keeping the queue in queue_order (hpt.executor.plan)."""
        self.queue.extend((s, 1) for s in subs)
        self.queue = deque(sorted(self.queue, key=lambda item: self._order[item[0].trial_id]))

    # --- the loop --------------------------------------------------------------------------------
    def run(self) -> RunResult:
        backend = self.backend
        # Preflight first: a backend's capacity may depend on the trials (k8s: GPUs per trial).
        backend.preflight(self._to_check())   # trials added later share round 1's image and resources
        parallel = max(1, self.opt.parallel or backend.capacity())
        self._order = queue_order(self.plan.plan)
        # A target reached before (a re-apply): no decision and no new trial (said below, once queued).
        reached = self.target.first(self.publisher.current()) if self.target is not None else None
        if reached is not None:
            self.result.target_reached = self.target.says(*reached)  # type: ignore[union-attr]
        # A crash may have come between a trial's row and the decision it completed: decide it now.
        self._ask_grow(parallel)
        plan = self.plan
        to_run = sorted(self._classify(), key=lambda s: self._order[s.trial_id])
        self._load_stopping_state()
        adopted = backend.adopt(plan.experiment_id, self.store.uri)
        now = time.monotonic()
        for tid, handle in adopted.items():
            sub = next((s for s in to_run if s.trial_id == tid), None)
            if sub is None:  # done already (or not this plan's): let it end on its own
                if tid in plan.plan.digests:
                    self._keep_log_of_finished(tid, handle)
                _best_effort(f"release {tid}", backend.release, handle)
                continue
            attempt = handle.attempt
            self.running[tid] = _Running(sub, handle, attempt, now, _utc(), adopted=True)
            self.result.adopted += 1
            claim = self.claims.acquire(tid)  # this plan copy's claim from the apply that started it
            if isinstance(claim, Claim):
                self.held[tid] = claim
        self.queue.extend((s, 1) for s in to_run if s.trial_id not in self.running)

        poll = self.opt.poll_interval_s or backend.poll_interval
        # A trainer writes its row a moment before it exits (torch's teardown takes a second or so):
        # look for rows of running trials now and then, so results.csv shows them at once.
        row_check = 0.25 if "://" not in self.store.uri else 2.0
        self.emit("run-started", backend=backend.name, results=self.store.uri, total=self.result.total,
                  already_done=self.result.already_done, kept_failed=self.result.kept_failed,
                  to_run=len(to_run), adopted=self.result.adopted, parallel=parallel)
        for tid in list(self.running):
            self.emit("trial-adopted", trial_id=tid, attempt=self.running[tid].attempt)
        if reached is not None:
            self._reach_target(*reached, before=True)
        self.publisher.publish()  # a crash may have left results.csv behind the rows
        if not to_run:
            self.emit("message", text=self._nothing_to_do())
            return self._end()

        in_main = threading.current_thread() is threading.main_thread()
        previous = {}
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._signal)
        try:
            while self.queue or self.running or self.waiting or self.elsewhere:
                if self._stop_signal is not None:
                    self.result.interrupted = True
                    self._interrupt(f"interrupted ({self._stop_signal})")
                    break
                if self.result.stopped:
                    self._cancel_all(self.result.stopped)
                    break
                now = time.monotonic()
                ready = [w for w in self.waiting if w[0] <= now]
                for item in ready:
                    self.waiting.remove(item)
                    self.queue.appendleft((item[1], item[2]))
                while self.queue and len(self.running) < parallel and not self.result.stopped:
                    sub, attempt = self.queue.popleft()
                    self._submit(sub, attempt)
                finished_any = False
                for tid, run in list(self.running.items()):
                    status = backend.poll(run.handle)
                    limit = self.opt.timeout_s
                    if not status.finished and limit and time.monotonic() - run.started > limit and not run.adopted:
                        backend.cancel(run.handle)
                        run.timed_out = limit
                        status = TrialStatus(Phase.FAILED, reason=f"timed out after {limit:g} s")
                    if status.finished:
                        self._finish(run, status)
                        finished_any = True
                self._rows_appeared(row_check)
                self.publisher.publish()  # when rows changed and it is due (hpt.executor.publish)
                self._check_stops()
                self._look_elsewhere()
                grown = self._ask_grow(parallel) if self._grow_due else []
                if grown:
                    self._enqueue(grown)
                self._renew_claims()
                if self._runs_dirty:
                    self._write_runs()
                if finished_any or grown or self._stop_signal or self.result.stopped:
                    continue
                time.sleep(poll)
        except KeyboardInterrupt:
            self.result.interrupted = True
            self._interrupt("interrupted")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._end()

    def close(self) -> None:
        _best_effort("close the backend", self.backend.close)

    def _nothing_to_do(self) -> str:
        r = self.result
        if r.kept_failed:
            return (f"nothing to run: {r.already_done} of {r.total} trials done, {r.kept_failed} failed and kept "
                    "(--skip-failed); drop --skip-failed to retry them")
        return f"nothing to run: all {r.total} trials are done"

    def _end(self) -> RunResult:
        r = self.result
        r.not_run = len(self.queue) + len(self.waiting) + len(self.running) + len(self.elsewhere) + len(self.skewed)
        for tid in [t for t in self.held if t not in self.left_running]:
            self._release_claim(tid)
        self.publisher.publish(final=True)
        self._write_runs(finished=True)
        parts = [f"{r.done + r.already_done}/{r.total} done"]
        if r.skipped:
            parts.append(f"{r.skipped} not started: {r.target_reached}")
        if r.already_done:
            parts.append(f"{r.already_done} were done already")
        if r.early_stopped:
            parts.append(f"{r.early_stopped} stopped early")
        if r.failed or r.kept_failed:
            parts.append(f"{r.failed + r.kept_failed} failed")
        if r.not_run:
            parts.append(f"{r.not_run} not run")
        summary = ", ".join(parts)
        if r.stopped:
            summary = f"{r.stopped}; {summary}"
        if r.interrupted and r.left_running:
            follow = self.backend.follow_hint(self.plan.experiment_id)
            summary = f"interrupted; {summary}; {r.left_running} trial(s) left running: {follow}"
        elif r.interrupted:
            summary = f"interrupted; {summary}; running trials were cancelled"
        if (r.interrupted or r.stopped or r.not_run) and self.opt.resume_hint:
            summary += f". Resume with: {self.opt.resume_hint}"
        elif r.failed and self.result.failures and all(RECOMPILE in why for why in self.result.failures.values()):
            summary += f". Re-applying this plan would fail the same way: {RECOMPILE} (`hpt compile`) and apply the new plan"
        elif r.failed and self.opt.resume_hint:
            summary += f". Re-apply to retry the failed trials: {self.opt.resume_hint}"
        self.emit("run-finished", summary=summary, results=self.store.uri, exit_code=r.exit_code, **r.counts(),
                  apply_cpu_s=round(_own_cpu_s(), 3))
        return r


def run_plan(plan: LoadedPlan, backend: Backend, store: Store, options: RunOptions, reporter: Reporter,
             grow: Grow | None = None, stopper: Stopper | None = None, log_reader: LogReader | None = None) -> RunResult:
    scheduler = Scheduler(plan, backend, store, options, reporter, grow, stopper, log_reader)
    try:
        return scheduler.run()
    finally:
        scheduler.close()
