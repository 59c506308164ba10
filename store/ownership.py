"""Trial ownership: the ONE process that may train a trial, taken by that process itself, in the store.

`hpt apply` claims a trial (hpt.store.claims: which apply runs it); the process that the apply starts —
a fresh `hpt-trial`, a warm worker's fork, a container, a Job's pod — must then own it before it
trains, with a ticket the apply gave it ($HPT_TRIAL_TICKET, "<fence>:<token>"):

    owners/<trial-id>/<fence>.json   {"token", "host", "here", "pid", "ticks", "expires", "lease_s", "ended"}

- The process takes ownership by creating its fence's record, create-only (a local hard link; gs://
  if_generation_match=0): of two processes with one fence, exactly one succeeds; the other exits
  EXIT_NOT_OWNER without training. A record is never deleted and never created by an apply, so nothing
  a dead apply left behind (pid records, requests, copies) can make a process an owner.
- Fences are numbered 1, 2, 3, … with no gaps: an apply hands out fence n+1 only when fence n's record
  exists and its owner is dead (owner_state) — its own launch that it saw end, a process on this machine
  that is gone, an owner that said it ended, or a lease that lapsed. A launch that never took its fence
  leaves no record, so the next launch gets the same number and at most one of the two owns it.
- While it runs, the owner renews its lease (a heartbeat thread) and stops itself if it cannot renew
  before the lease ends or finds a higher fence: so "lapsed" means "gone". It checks that it still holds
  the trial once more before it writes the row (the row itself is create-only as well).
docs/executor.md ("Exactly once") gives the whole argument.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from hpt.schemas.errors import UserError
from hpt.store.base import AlreadyExists, Store, store_deadline_s

log = logging.getLogger(__name__)

OWNERS = "owners/"
TICKET_ENV = "HPT_TRIAL_TICKET"       # "<fence>:<token>": set by `hpt apply` on every launch
LEASE_ENV = "HPT_OWNER_LEASE_S"       # tests shorten it
DEFAULT_OWNER_LEASE_S = 60.0          # added to the store's deadline (lease_s); renewed every RENEW_EVERY_S
RENEW_EVERY_S = 30.0
MAX_LEASE_S = 600.0                   # the longest lease the protocol allows: a later `expires` is a skewed clock
EXIT_NOT_OWNER = 73                   # another process owns the trial: this one trained nothing

TRIAL_ID = re.compile(r"t-[0-9a-f]{16}\Z")     # the manifest schema's id grammar (trial.schema.json)
_TICKET = re.compile(r"([1-9][0-9]{0,8}):([0-9a-f]{8,64})\Z")
PID_MAX = 2**22   # Linux's largest pid_max


def check_trial_id(trial_id: str, where: str = "trial id") -> str:
    """The id itself when it is a trial id (t- and 16 hex digits); ValueError otherwise. Every key and
    file name hpt derives from an id goes through this, so an id read from a record is never a path."""
    if not isinstance(trial_id, str) or not TRIAL_ID.match(trial_id):
        raise ValueError(f"{where}: {trial_id!r} is not a trial id (t- and 16 hex digits)")
    return trial_id


def owner_key(trial_id: str, fence: int) -> str:
    return f"{OWNERS}{check_trial_id(trial_id)}/{fence:06d}.json"


# --- which process, on which machine --------------------------------------------------------------
def _here() -> str:
    """This kernel boot and pid namespace: a pid means the same process only where this is equal
    (a container has its own pid namespace, another machine its own boot)."""
    parts = []
    for path in ("/proc/sys/kernel/random/boot_id",):
        try:
            parts.append(Path(path).read_text().strip())
        except OSError:
            parts.append(socket.gethostname())
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        parts.append("")
    return "/".join(parts)


HERE = _here()


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): guards against pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, ticks: str | None = None) -> bool:
    """Whether `pid` still runs on this machine (not a zombie); with `ticks`, also that it is the same process."""
    if not isinstance(pid, int) or not 1 < pid <= PID_MAX:  # damaged: 0 and -1 mean "every process" to kill(), 1 is init
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False  # a zombie has finished; its parent just has not reaped it
        except OSError:
            return False
        return ticks is None or start_ticks(pid) == ticks
    return True


# --- tickets and records --------------------------------------------------------------------------
@dataclass(frozen=True)
class Ticket:
    """What an apply hands a process it starts: the fence it may take, and a token naming this launch."""
    fence: int
    token: str

    def __str__(self) -> str:
        return f"{self.fence}:{self.token}"

    @classmethod
    def parse(cls, text: str) -> "Ticket":
        m = _TICKET.match(text.strip())
        if not m:
            raise ValueError(f"{TICKET_ENV}={text!r} is not <fence>:<token>")
        return cls(int(m.group(1)), m.group(2))

    @classmethod
    def new(cls, fence: int) -> "Ticket":
        return cls(fence, uuid.uuid4().hex)


@dataclass(frozen=True)
class OwnerRecord:
    fence: int
    token: str = ""
    host: str = ""
    here: str = ""
    pid: int = 0
    ticks: str | None = None
    expires: float = 0.0
    ended: bool = False

    @property
    def who(self) -> str:
        return f"pid {self.pid} on {self.host or '?'}"


def fences(store: Store, trial_id: str) -> list[int]:
    prefix = f"{OWNERS}{check_trial_id(trial_id)}/"
    found = []
    for key in store.list(prefix):
        name = key[len(prefix):]
        if name.endswith(".json") and name[:-5].isdigit():
            found.append(int(name[:-5]))
    return sorted(found)


def read_record(store: Store, trial_id: str, fence: int) -> OwnerRecord:
    """The record of one fence; a damaged one reads as an owner that is gone (token "", expired)."""
    try:
        doc = json.loads(store.get(owner_key(trial_id, fence)))
        pid = doc.get("pid")
        return OwnerRecord(fence, str(doc["token"]), str(doc.get("host", "")), str(doc.get("here", "")),
                           pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
                           str(doc["ticks"]) if doc.get("ticks") is not None else None,
                           float(doc["expires"]), bool(doc.get("ended", False)))
    except (KeyError, ValueError, TypeError, AttributeError):
        return OwnerRecord(fence)


def latest(store: Store, trial_id: str) -> OwnerRecord | None:
    numbers = fences(store, trial_id)
    return read_record(store, trial_id, numbers[-1]) if numbers else None


ALIVE, DEAD, SKEWED = "alive", "dead", "skewed"


def owner_state(record: OwnerRecord, now: float, seen_end: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """Whether a fence's owner may still be training: DEAD (its token is a launch the caller saw end, it
    said it ended, its process on this machine is gone, or its lease lapsed), SKEWED (a lease longer than
    the protocol allows: the owner's clock is wrong, so its lease says nothing) or ALIVE."""
    if not record.token or record.token in seen_end or record.ended:
        return DEAD
    if record.here == HERE and not process_alive(record.pid, record.ticks):
        return DEAD
    if record.expires <= now:
        return DEAD
    if record.expires > now + MAX_LEASE_S:
        return SKEWED
    return ALIVE


def lease_s() -> float:
    """$HPT_OWNER_LEASE_S, else the store's retry deadline plus a minute: an owner that rides out an outage
    the store calls would survive is not stopped for it (it could not write its row anyway before)."""
    text = os.environ.get(LEASE_ENV, "")
    try:
        value = float(text) if text else store_deadline_s() + DEFAULT_OWNER_LEASE_S
    except (ValueError, UserError):
        value = DEFAULT_OWNER_LEASE_S
    return min(max(value, 1.0), MAX_LEASE_S)


# --- the owner's side (the trial process) ---------------------------------------------------------
class Ownership:
    """Held by the trial process: take() before training, holds() before the row, end() at the end."""

    def __init__(self, store: Store, trial_id: str, ticket: Ticket | None = None, lease: float | None = None):
        self.store = store
        self.trial_id = check_trial_id(trial_id)
        self.lease_s = lease if lease is not None else lease_s()
        if ticket is None:  # run by hand (no apply): the next fence, owned like any other
            current = latest(store, trial_id)
            ticket = Ticket.new(current.fence + 1 if current else 1)
        self.ticket = ticket
        self.taken = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline = 0.0

    @classmethod
    def from_env(cls, store: Store, trial_id: str) -> "Ownership":
        text = os.environ.get(TICKET_ENV, "").strip()
        return cls(store, trial_id, Ticket.parse(text) if text else None)

    @property
    def key(self) -> str:
        return owner_key(self.trial_id, self.ticket.fence)

    def _doc(self, ended: bool = False) -> bytes:
        return json.dumps({"token": self.ticket.token, "host": socket.gethostname(), "here": HERE, "pid": os.getpid(),
                           "ticks": start_ticks(os.getpid()), "expires": time.time() + self.lease_s,
                           "lease_s": self.lease_s, "ended": ended}).encode()

    def take(self) -> bool:
        """Own the trial; False when another process owns this fence or a later one (then train nothing)."""
        try:
            self.store.put_once(self.key, self._doc())
        except AlreadyExists:
            return False
        if fences(self.store, self.trial_id)[-1] != self.ticket.fence:
            return False  # a later fence exists: this launch was given up on (cannot happen with gapless fences)
        self.taken = True
        self._deadline = time.monotonic() + self.lease_s
        return True

    def holds(self) -> bool:
        """Still the owner: the latest fence is ours and names our token."""
        numbers = fences(self.store, self.trial_id)
        return bool(numbers) and numbers[-1] == self.ticket.fence and \
            read_record(self.store, self.trial_id, self.ticket.fence).token == self.ticket.token

    def renew(self) -> bool:
        if fences(self.store, self.trial_id)[-1] != self.ticket.fence:
            return False
        self.store.put(self.key, self._doc())
        self._deadline = time.monotonic() + self.lease_s
        return True

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="hpt-ownership", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        watchdog = threading.Thread(target=self._watch, name="hpt-ownership-watchdog", daemon=True)
        watchdog.start()
        while not self._stop.wait(min(self.lease_s / 4, RENEW_EVERY_S)):
            try:
                if not self.renew():
                    _fenced_out(f"trial {self.trial_id}: a later fence took the trial over; stopping")
            except Exception as err:  # noqa: BLE001  (the watchdog stops the trial if this lasts past the lease)
                log.warning("could not renew the ownership of %s: %s", self.trial_id, err)

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            if time.monotonic() > self._deadline:
                _fenced_out(f"trial {self.trial_id}: could not renew its ownership within its {self.lease_s:g} s "
                            "lease; stopping so that another process may run it")

    def end(self) -> None:
        """The process is done with the trial: say so, so an apply need not wait for the lease."""
        self._stop.set()
        if not self.taken:
            return
        try:
            if self.holds():
                self.store.put(self.key, self._doc(ended=True))
        except Exception as err:  # noqa: BLE001  (the lease lapses by itself)
            log.warning("could not mark the ownership of %s ended: %s", self.trial_id, err)


def _fenced_out(message: str) -> None:
    log.error(message)
    try:
        if os.getpgrp() == os.getpid():  # a trial leads its own group: take the user's program down too
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.killpg(os.getpid(), signal.SIGTERM)
    finally:
        os._exit(EXIT_NOT_OWNER)
