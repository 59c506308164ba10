"""What `hpt apply` keeps of the store's rows while it runs, and what it publishes from them: results.csv
at the store root and the row index (hpt.store.index).

Its cost per finished trial does not grow with the store: it reads the whole store (one listing of
rows/, the index, the row files the index lacks) once when the run starts; at its end, and in between
only as often as that costs no more than a small share of the run's time, it lists rows/ again and reads
only the row files that are new or changed (rows other applies write to a shared store); each trial the loop sees finish is `note`d: one read of its own row
file. results.csv is rewritten when rows changed, at most as often as keeps its rewriting under the
same share; the index gets one segment of the rows it lacked every APPEND_EVERY_S at most, and at the end.
"""
from __future__ import annotations

import logging
import time
from typing import Iterable

from hpt.schemas.row import table_csv
from hpt.store import RESULTS_CSV, Store, StoreUnavailable, row_key
from hpt.store.index import APPEND_EVERY_S, Entry, IndexWriter, index_disabled, read_entries, row_versions, snapshot
from hpt.store.rows import Row, check_row, judge_row, parse_row_bytes

log = logging.getLogger(__name__)

# A background task (a full sync, a results.csv rewrite) runs again only after this many times its own
# last duration has passed, so it costs at most 1/SHARE of the run's time, however big the store is.
SHARE = 20.0
RESYNC_MIN_S = 30.0   # a full sync with the store (other applies' rows) at most this often
FINAL_SYNC_AFTER_S = 5.0  # the end of a run syncs again unless it synced this recently (a run with nothing to do)


class ResultsPublisher:
    def __init__(self, store: Store, write_index: bool = True):
        self.store = store
        self.rows: dict[str, Row] = {}
        self.versions: dict[str, str] = {}      # trial id → the version of the row file `rows` holds
        self._synced = False
        self._synced_at = 0.0
        self._next_sync = 0.0
        self._published: str | None = None
        self._dirty = True
        self._next_csv = 0.0
        self._write_index = write_index and not index_disabled()
        self._index: IndexWriter | None = None
        self._pending: dict[str, Entry] = {}    # rows the index lacks, to append
        self._next_append = 0.0

    # ---------------------------------------------------------------------------------- reading
    def sync(self) -> dict[str, Row]:
        """Every row now in the store (trial id → checked row): one listing, the index, the rows it lacks."""
        started = time.monotonic()
        snap = snapshot(self.store)
        self.rows, self.versions = snap.rows, snap.versions
        self._pending = {tid: e for tid, e in {**self._pending, **snap.fresh}.items() if self.versions.get(tid) == e.version}
        if self._index is None:
            self._index = IndexWriter(self.store, snap.segments)
        self._synced, self._dirty, self._synced_at = True, True, time.monotonic()
        self._next_sync = time.monotonic() + max(RESYNC_MIN_S, SHARE * (time.monotonic() - started))
        return self.rows

    def refresh(self) -> dict[str, Row]:
        """Catch up with the store after the first sync: one listing of rows/, then only the row files that
        are new or changed since (gone ones dropped) — no index read, nothing re-read that is known."""
        if not self._synced:
            return self.sync()
        started = time.monotonic()
        versions = row_versions(self.store)
        for tid in [t for t in self.versions if t not in versions]:
            self.forget([tid])
        changed = [tid for tid, v in versions.items() if self.versions.get(tid) != v]
        for tid, got in read_entries(self.store, changed, versions).items():
            if isinstance(got, Entry):
                row = judge_row(tid, got.row, row_key(tid))
                self._pending[tid] = got
            else:
                row = got
            if self.rows.get(tid) != row:
                self._dirty = True
            self.rows[tid], self.versions[tid] = row, versions[tid]
        self._synced_at = time.monotonic()
        self._next_sync = time.monotonic() + max(RESYNC_MIN_S, SHARE * (time.monotonic() - started))
        return self.rows

    def current(self) -> dict[str, Row]:
        """The rows as this publisher knows them now (synced once first)."""
        return self.rows if self._synced else self.sync()

    def note(self, trial_id: str) -> Row | None:
        """Read one trial's row from its file (the loop saw it finish, or appear): its checked row, or None."""
        key = row_key(trial_id)
        try:
            data, version = self.store.get_versioned(key)
        except KeyError:
            self.forget([trial_id])
            return None
        parsed = parse_row_bytes(data)
        row = check_row(trial_id, data, key) if parsed is None else judge_row(trial_id, parsed, key)
        if self.rows.get(trial_id) != row or self.versions.get(trial_id) != version:
            self.rows[trial_id], self.versions[trial_id] = row, version
            self._dirty = True
            if parsed is not None and version:
                self._pending[trial_id] = Entry(trial_id, version, parsed)
        return row

    def forget(self, trial_ids: Iterable[str]) -> None:
        """Rows the loop moved aside (a failed row before its retry)."""
        for tid in trial_ids:
            if self.rows.pop(tid, None) is not None:
                self._dirty = True
            self.versions.pop(tid, None)
            self._pending.pop(tid, None)

    # ------------------------------------------------------------------------------- publishing
    def publish(self, final: bool = False) -> bool:
        """Write results.csv (and a segment of the index) if rows changed and it is due; `final` (the run's
        end): sync with the store first (unless it just did) and write what changed now. True if written."""
        now = time.monotonic()
        if not self._synced or now >= self._next_sync or (final and now - self._synced_at > FINAL_SYNC_AFTER_S):
            self.refresh()
        written = False
        if self._dirty and (final or now >= self._next_csv):
            written = self._write_csv()
        if self._pending and (final or now >= self._next_append):
            self._append_index()
        return written

    def _write_csv(self) -> bool:
        started = time.monotonic()
        if self._published is None:
            try:  # what an earlier run left (it may lag behind the rows after a crash)
                self._published = self.store.get(RESULTS_CSV).decode("utf-8")
            except (KeyError, UnicodeDecodeError):
                self._published = ""
        self._dirty = False
        if not self.rows and not self._published:
            return False
        text = table_csv(self.rows.values())
        written = text != self._published
        if written:
            self.store.put(RESULTS_CSV, text.encode("utf-8"))
            self._published = text
        self._next_csv = time.monotonic() + SHARE * (time.monotonic() - started)
        return written

    def _append_index(self) -> None:
        if not self._write_index or self._index is None:
            self._pending.clear()
            return
        entries = list(self._pending.values())
        self._pending.clear()
        self._next_append = time.monotonic() + APPEND_EVERY_S
        try:
            self._index.append(entries)
            self._index.compact(self.versions)
        except StoreUnavailable:
            raise
        except Exception:  # the index only makes readers faster: a run never stops for it
            log.warning("could not append to the row index", exc_info=log.isEnabledFor(logging.DEBUG))
