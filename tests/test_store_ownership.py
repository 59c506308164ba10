"""The ownership protocol's rules, on a real local store (hpt.store.ownership; the argument: docs/executor.md)."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from hpt.store import open_store
from hpt.store.ownership import (ALIVE, DEAD, MAX_LEASE_S, SKEWED, Ownership, Ticket, check_trial_id, fences, latest,
                                 owner_key, owner_state)

TID = "t-00000000000000aa"


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"))


def test_of_two_launches_with_one_fence_exactly_one_owns(store):
    first, second = Ownership(store, TID, Ticket.new(1)), Ownership(store, TID, Ticket.new(1))
    assert first.take() and not second.take()
    assert first.holds() and not second.holds()
    assert fences(store, TID) == [1]


def test_a_later_fence_fences_the_earlier_owner_out(store):
    first = Ownership(store, TID, Ticket.new(1))
    assert first.take()
    assert Ownership(store, TID, Ticket.new(2)).take()
    assert not first.holds() and not first.renew()      # before its row, and at its next heartbeat
    assert not Ownership(store, TID, Ticket.new(1)).take()   # a stale launch of fence 1 can never own


def test_a_stale_ticket_older_than_the_latest_fence_never_owns(store):
    for fence in (1, 2, 3):
        owner = Ownership(store, TID, Ticket.new(fence))
        assert owner.take()
        owner.end()
    assert [Ownership(store, TID, Ticket.new(f)).take() for f in (1, 2, 3)] == [False] * 3


def test_run_by_hand_takes_the_next_fence(store):
    assert Ownership(store, TID, Ticket.new(1)).take()
    by_hand = Ownership(store, TID)
    assert by_hand.ticket.fence == 2 and by_hand.take()


def test_an_owner_is_gone_when_it_ended_its_pid_is_gone_or_its_lease_lapsed(store):
    owner = Ownership(store, TID, Ticket.new(1))
    assert owner.take()
    now = time.time()
    assert owner_state(latest(store, TID), now) == ALIVE                 # this process, running
    assert owner_state(latest(store, TID), now, {owner.ticket.token}) == DEAD   # its launch was seen ending
    assert owner_state(latest(store, TID), now + owner.lease_s + 1) == DEAD   # lapsed
    owner.end()
    assert owner_state(latest(store, TID), now) == DEAD                  # it said it ended


def test_a_dead_process_on_this_machine_is_gone_at_once(store):
    script = ("import sys; from hpt.store import open_store; from hpt.store.ownership import Ownership, Ticket;"
              f"assert Ownership(open_store(sys.argv[1]), {TID!r}, Ticket.new(1)).take()")
    subprocess.run([__import__("sys").executable, "-c", script, store.uri], check=True)   # owned, then exited (no end)
    record = latest(store, TID)
    assert record is not None and not record.ended and record.expires > time.time()
    assert owner_state(record, time.time()) == DEAD


def test_a_lease_past_the_protocol_is_a_skewed_clock(store):
    store.put(owner_key(TID, 1), json.dumps({"token": "ab" * 8, "host": "elsewhere", "here": "another-machine",
                                             "pid": 7, "expires": time.time() + 10 * MAX_LEASE_S}).encode())
    assert owner_state(latest(store, TID), time.time()) == SKEWED


def test_a_damaged_record_counts_as_a_fence_whose_owner_is_gone(store):
    store.put(owner_key(TID, 1), b"\x00not json")
    assert fences(store, TID) == [1] and owner_state(latest(store, TID), time.time()) == DEAD
    assert not Ownership(store, TID, Ticket.new(1)).take()


@pytest.mark.parametrize("bad", ["../../x", "t-0", "t-00000000000000aa/..", "", "T-00000000000000AA"])
def test_a_trial_id_is_checked_before_it_names_a_key(bad):
    with pytest.raises(ValueError):
        check_trial_id(bad)
    with pytest.raises(ValueError):
        Ticket.parse(bad)
