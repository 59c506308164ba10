"""Continuous results: results.csv at the store root, refreshed as trials finish.

Rows are create-only, so a parsed row never changes while its file exists: the publisher keeps every
row it has read and, on each refresh, lists rows/ once and reads only the files it has not seen
(a failed row moved aside for a retry is dropped; `forget` drops one the loop knows has changed).
"""
from __future__ import annotations

from typing import Iterable

from hpt.store import RESULTS_CSV, Store, iter_row_ids
from hpt.store.rows import read_rows
from hpt.schemas.row import table_csv


class ResultsPublisher:
    def __init__(self, store: Store):
        self.store = store
        self.rows: dict[str, dict[str, str]] = {}
        self._published: str | None = None

    def forget(self, trial_ids: Iterable[str]) -> None:
        for tid in trial_ids:
            self.rows.pop(tid, None)

    def sync(self) -> dict[str, dict[str, str]]:
        """Every row now in the store (trial id → row), reading only the row files not yet seen."""
        present = set(iter_row_ids(self.store))
        for gone in set(self.rows) - present:
            del self.rows[gone]
        # Checked rows; a damaged file reads as a failed row that says so (see hpt.store.rows).
        self.rows.update(read_rows(self.store, sorted(present - set(self.rows))))
        return self.rows

    def publish(self) -> bool:
        """Sync and write results.csv if its content changed. True if written."""
        rows = self.sync()
        if self._published is None:
            try:  # what an earlier run left (it may lag behind the rows after a crash)
                self._published = self.store.get(RESULTS_CSV).decode("utf-8")
            except KeyError:
                self._published = ""
        if not rows and not self._published:
            return False
        text = table_csv(rows.values())
        if text == self._published:
            return False
        self.store.put(RESULTS_CSV, text.encode("utf-8"))
        self._published = text
        return True
