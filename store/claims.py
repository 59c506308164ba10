"""Claims: which `hpt apply`, anywhere, is running a trial now — kept in the store itself.

A lock file beside a plan only keeps one copy of that plan folder from running twice; two copies of a
plan, or two machines sharing a gs:// store, would train every trial twice. So before a trial starts,
the apply claims it in the store:

    claims/<trial-id>/<n>.json    {"owner": ..., "expires": <unix seconds>, "host": ..., "pid": ...}

Claims are create-only objects, numbered: the highest number is the trial's current claim. Claiming a
trial creates number 1 (or, for a claim whose lease has expired — its apply died — the next number),
with the store's create-only write (a local hard link; gs:// if_generation_match=0), so of two applies
racing for one trial exactly one wins. The owner renews its lease (a heartbeat) while the trial runs or
waits for a retry, and deletes its claim when the trial is over. An owner is one plan copy on one
machine, so a re-apply of the same plan (after a crash) picks up its own claims at once, while another
copy waits for the row, or for the lease to expire and then takes the trial over.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

from hpt.store.base import AlreadyExists, Store

CLAIMS = "claims/"
DEFAULT_LEASE_S = 120.0  # a claim not renewed for this long belongs to a dead apply


@dataclass(frozen=True)
class Claim:
    trial_id: str
    number: int

    @property
    def key(self) -> str:
        return claim_key(self.trial_id, self.number)


@dataclass(frozen=True)
class Holder:
    """Who holds a trial's current claim, and until when."""
    owner: str
    expires: float
    number: int

    def alive(self, now: float) -> bool:
        return self.expires > now


def claim_key(trial_id: str, number: int) -> str:
    return f"{CLAIMS}{trial_id}/{number:06d}.json"


class Claims:
    """The claims of one owner (one plan copy on one machine) in one store."""

    def __init__(self, store: Store, owner: str, lease_s: float = DEFAULT_LEASE_S):
        self.store = store
        self.owner = owner
        self.lease_s = lease_s

    def _doc(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires": time.time() + self.lease_s, "lease_s": self.lease_s,
                           "host": socket.gethostname(), "pid": os.getpid()}).encode()

    def _numbers(self, trial_id: str) -> list[int]:
        prefix = f"{CLAIMS}{trial_id}/"
        numbers = []
        for key in self.store.list(prefix):
            name = key[len(prefix):]
            if name.endswith(".json") and name[:-5].isdigit():
                numbers.append(int(name[:-5]))
        return sorted(numbers)

    def holder(self, trial_id: str) -> Holder | None:
        """The current claim of a trial, or None. A claim that cannot be read counts as expired."""
        numbers = self._numbers(trial_id)
        if not numbers:
            return None
        try:
            doc = json.loads(self.store.get(claim_key(trial_id, numbers[-1])))
            return Holder(str(doc["owner"]), float(doc["expires"]), numbers[-1])
        except (KeyError, ValueError, TypeError):
            return Holder("", 0.0, numbers[-1])

    def acquire(self, trial_id: str) -> Claim | Holder:
        """Claim the trial: the Claim when this owner holds it now, else the live Holder that does."""
        for _ in range(5):  # each lap loses a race to a concurrent claimer, which then holds it
            current = self.holder(trial_id)
            if current is not None and current.owner == self.owner:
                claim = Claim(trial_id, current.number)  # ours, from an earlier apply of this plan copy
                self.store.put(claim.key, self._doc())
                return claim
            if current is not None and current.alive(time.time()):
                return current
            claim = Claim(trial_id, current.number + 1 if current else 1)
            try:
                self.store.put_once(claim.key, self._doc())
                return claim
            except AlreadyExists:
                continue
        current = self.holder(trial_id)
        return current if current is not None else Holder("", 0.0, 0)

    def renew(self, claim: Claim) -> bool:
        """Extend the lease. False if another apply took the trial over (this one's lease had expired)."""
        numbers = self._numbers(claim.trial_id)
        if numbers and numbers[-1] > claim.number:
            return False
        self.store.put(claim.key, self._doc())
        return True

    def release(self, claim: Claim) -> None:
        """The trial is over (a row, or cancelled): drop this claim and the expired ones before it."""
        for number in self._numbers(claim.trial_id):
            if number <= claim.number:
                self.store.delete(claim_key(claim.trial_id, number))
