"""The row index (hpt.store.index) makes readers faster and never changes what they read.

Each case builds a store whose index lags (rows written after it), is damaged (bytes changed, a segment
that does not parse, a stray object), names rows that are gone, or holds an older version of a row (a
failed row retried), and checks that the rows read through the index, and what `hpt results` and
`hpt status` print, are exactly what reading every row file gives (HPT_ROW_INDEX=0), in a folder and on
gs:// (fake-gcs-server). Also: `hpt apply` keeps the index covering every row, `hpt index --rebuild`,
and the summarised tables past SUMMARY_AT rows.
"""
from __future__ import annotations

import json

import pytest
from results_fixtures import RANGES, make_row, put_row
from typer.testing import CliRunner

from executor_support import fake_env, kill_leftovers, write_plan
from hpt.cli import app
from hpt.commands.common import SUMMARY_AT
from hpt.schemas.row import row_csv, table_csv
from hpt.store import RESULTS_CSV, open_store, row_key
from hpt.store.index import (INDEX_ROWS, Entry, IndexWriter, shared_column_order, describe, encode, rebuild, snapshot,
                             snapshot_columns)
from hpt.store.rows import read_rows
from trial_factory import make_manifest

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_leftover_trials(tmp_path):
    yield
    kill_leftovers(tmp_path)


@pytest.fixture(params=["local", "gcs"])
def store_uri(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("gcs_bucket") + "/store"


def _fill(store, n: int, start: int = 0, failed_every: int = 5) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        failed = i % failed_every == failed_every - 1
        row = make_row("lstm", {"learning_rate": 0.001 * (1 + i // 3), "dropout": 0.1}, RANGES[i % 3],
                       status="failed" if failed else "done", reason="loss became NaN" if failed else "",
                       mse=0.5 + (i * 37 % 11) / 10)
        put_row(store, row)
        rows.append(row)
    return rows


def _cli(*args: str, index: bool, monkeypatch) -> str:
    monkeypatch.setenv("HPT_ROW_INDEX", "1" if index else "0")
    result = runner.invoke(app, list(args))
    monkeypatch.delenv("HPT_ROW_INDEX")
    assert result.exit_code in (0, 1), result.output
    return result.stdout


def _same_as_every_row_file(store, monkeypatch, plan_dir=None) -> None:
    """The index's rows (as dicts, and as the columns `hpt results` reads), and what results/status print,
    equal reading every row file."""
    every = read_rows(store)
    rows = snapshot(store).rows
    assert rows == every
    columns = snapshot_columns(store)
    assert columns.rows() == every and columns.ids == list(rows)
    assert list(columns.data) == list(dict.fromkeys(c for r in rows.values() for c in r))  # a DataFrame's columns
    commands = [["results", store.uri, "--format", "json"], ["results", store.uri, "--by", "config", "--format", "json"],
                ["results", store.uri], ["results", store.uri, "--all"]]
    if plan_dir is not None:
        commands += [["status", str(plan_dir), "--results", store.uri, "--format", "json"],
                     ["status", str(plan_dir), "--results", store.uri]]
    for args in commands:
        assert _cli(*args, index=True, monkeypatch=monkeypatch) == _cli(*args, index=False, monkeypatch=monkeypatch), args


def _damage_one_segment(store) -> None:
    key = store.list(INDEX_ROWS)[0]
    data = bytearray(store.get(key))
    data[len(data) // 2] ^= 0x20
    store.delete(key)
    store.put(key, bytes(data))


def test_a_lagging_damaged_or_dangling_index_reads_like_every_row_file(store_uri, monkeypatch):
    store = open_store(store_uri)
    rows = _fill(store, 30)
    assert describe(store)["indexed"] == 0
    _same_as_every_row_file(store, monkeypatch)              # no index at all

    assert rebuild(store) == (30, 0)
    assert describe(store)["lacking"] == 0
    assert snapshot(store).from_files == 0                   # the whole read came from one segment
    _same_as_every_row_file(store, monkeypatch)

    more = _fill(store, 10, start=30)                        # lagging: rows the index lacks
    snap = snapshot(store)
    assert (snap.from_index, snap.from_files) == (30, 10)
    _same_as_every_row_file(store, monkeypatch)

    store.delete(row_key(rows[0]["trial_id"]))               # dangling: an entry whose row file is gone
    _same_as_every_row_file(store, monkeypatch)
    assert describe(store)["entries_without_row"] == 1

    retried = dict(rows[4], status="done", reason="", mse=0.01)  # a failed row moved aside and retried
    store.delete(row_key(retried["trial_id"]))
    store.put_once(row_key(retried["trial_id"]), row_csv(retried).encode())
    assert snapshot(store).rows[retried["trial_id"]]["status"] == "done"
    _same_as_every_row_file(store, monkeypatch)
    assert describe(store)["entries_for_older_file"] == 1

    _damage_one_segment(store)                               # damaged bytes: the segment is ignored
    assert snapshot(store).from_index == 0
    _same_as_every_row_file(store, monkeypatch)

    store.put(f"{INDEX_ROWS}junk.json", b"not a segment")    # stray objects, and a segment that hashes to
    data = b'{"format": 1, "columns": "x"}'                  # its name but is not a segment
    import hashlib

    store.put_once(f"{INDEX_ROWS}0-1-abcd-{hashlib.sha256(data).hexdigest()[:16]}.json", data)
    _same_as_every_row_file(store, monkeypatch)

    indexed, dropped = rebuild(store)
    assert indexed == len(rows) + len(more) - 1 and dropped == 3
    assert describe(store) == {"rows": indexed, "indexed": indexed, "lacking": 0, "entries_without_row": 0,
                               "entries_for_older_file": 0, "segments": 1, "unreadable_segments": 0}
    _same_as_every_row_file(store, monkeypatch)


def test_an_entry_is_judged_like_its_file(tmp_path):
    """A segment entry that hashes right but holds another trial's row, or a metric that is no number,
    reads as the damaged row its file would read as (the same check, hpt.store.rows.judge_row)."""
    store = open_store(str(tmp_path / "s"))
    a, b = _fill(store, 2, failed_every=99)
    versions = {k[5:-4]: v for k, v in store.list_versions("rows/").items()}
    IndexWriter(store).append([Entry(a["trial_id"], versions[a["trial_id"]], {k: str(v) for k, v in b.items()}),
                               Entry(b["trial_id"], versions[b["trial_id"]], {k: str(v) for k, v in b.items()} | {"mse": "x"})])
    got = snapshot(store)
    assert got.from_index == 2
    assert got.rows[a["trial_id"]]["status"] == "failed" and "holds the row of" in got.rows[a["trial_id"]]["reason"]
    assert "metric mse" in got.rows[b["trial_id"]]["reason"]
    assert snapshot_columns(store).rows() == got.rows


def test_segments_merge_by_level(tmp_path):
    store = open_store(str(tmp_path / "s"))
    rows = _fill(store, 40)
    versions = {k[5:-4]: v for k, v in store.list_versions("rows/").items()}
    writer = IndexWriter(store)
    for r in rows:
        writer.append([Entry(r["trial_id"], versions[r["trial_id"]], {k: str(v) for k, v in r.items()})])
        writer.compact(versions)
    levels = sorted(int(k[len(INDEX_ROWS):].split("-")[0]) for k in store.list(INDEX_ROWS))
    assert len(levels) < 16 and max(levels) >= 1             # 40 appends, merged 8 at a time
    assert snapshot(store).from_index == 40 and snapshot(store).rows == read_rows(store)


def test_a_segment_keeps_a_rows_own_columns(tmp_path):
    """Whatever a row holds: a column one row has and another lacks stays absent, an empty one empty."""
    entries = [Entry("t-1", "v1", {"trial_id": "t-1", "status": "done", "new.col": ""}),
               Entry("t-2", "v2", {"trial_id": "t-2", "status": "failed", "reason": "x, \"y\"\n"})]
    from hpt.store.index import decode

    assert decode(encode(entries)) == entries


def _plan(tmp_path, n: int):
    ms = [make_manifest("/data/none", "bag-of-words", epochs=1, seed=i, experiment="e-0123456789ab") for i in range(n)]
    return write_plan(tmp_path / "plan", ms), ms


def test_apply_keeps_the_index_and_results_csv_whole(store_uri, tmp_path, monkeypatch):
    plan_dir, ms = _plan(tmp_path, 4)
    store = open_store(store_uri)
    _fill(store, 12)                                          # a store that already holds other plans' rows
    for key, value in fake_env(tmp_path, {ms[1].id: "fail"}).items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["apply", str(plan_dir), "--results", store_uri, "--parallel", "2", "--format", "json"])
    assert result.exit_code == 1, result.output
    state = describe(store)
    assert state["rows"] == 16 and state["lacking"] == 0 and state["entries_without_row"] == 0
    assert store.get(RESULTS_CSV).decode() == table_csv(read_rows(store).values())
    _same_as_every_row_file(store, monkeypatch, plan_dir)

    # A re-apply retries the failed trial: its new row replaces the old one, the index follows.
    for key, value in fake_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["apply", str(plan_dir), "--results", store_uri, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert snapshot(store).rows[ms[1].id]["status"] == "done" and describe(store)["lacking"] == 0
    assert store.get(RESULTS_CSV).decode() == table_csv(read_rows(store).values())
    _same_as_every_row_file(store, monkeypatch, plan_dir)


def test_index_command(tmp_path):
    store = open_store(str(tmp_path / "s"))
    _fill(store, 5)
    result = runner.invoke(app, ["index", store.uri, "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["lacking"] == 5
    result = runner.invoke(app, ["index", store.uri, "--rebuild"])
    assert result.exit_code == 0 and "5 row(s), 5 indexed, 0 read from their files" in result.stdout
    result = runner.invoke(app, ["index", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such results folder" in result.output


def test_big_tables_are_summarised_unless_all(tmp_path, monkeypatch):
    store = open_store(str(tmp_path / "s"))
    rows = _fill(store, SUMMARY_AT + 100, failed_every=4)
    monkeypatch.setenv("COLUMNS", "200")
    out = runner.invoke(app, ["results", store.uri]).stdout
    done = [r for r in rows if r["status"] == "done"]
    assert f"the best 20 of {len(done)} finished trials" in out and "more finished trial(s): --all" in out
    assert "failed trial(s), by reason" in out and "loss became NaN" in out
    assert len(out.splitlines()) < 80
    best = min(done, key=lambda r: r["mse"])
    assert best["trial_id"] in out
    everything = runner.invoke(app, ["results", store.uri, "--all"]).stdout
    assert all(r["trial_id"] in everything for r in rows)
    assert len(everything.splitlines()) > len(rows)


class CountingStore:
    """A LocalStore that counts the calls each kind of store operation gets (and on which prefix)."""

    def __init__(self, uri: str):
        from collections import Counter

        self.inner = open_store(uri)
        self.uri = self.inner.uri
        self.root = self.inner.root
        self.calls: Counter = Counter()

    def __getattr__(self, name):
        fn = getattr(self.inner, name)

        def counted(*args, **kwargs):
            key = args[0] if args and isinstance(args[0], str) else ""
            self.calls[(name, key.split("/")[0] + "/" if "/" in key else key)] += 1
            return fn(*args, **kwargs)

        return counted


@pytest.mark.parametrize("trials", [4, 12])
def test_apply_lists_the_rows_a_fixed_number_of_times_whatever_the_trials(tmp_path, monkeypatch, trials):
    """Per finished trial, apply reads that trial's row, never the listing of rows/ or every row again."""
    from hpt.executor.backends.local import LocalBackend
    from hpt.executor.events import Collect
    from hpt.executor.loop import RunOptions, run_plan
    from hpt.executor.plan import load_plan

    plan_dir, ms = _plan(tmp_path, trials)
    for key, value in fake_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    store = CountingStore(str(tmp_path / "results"))
    _fill(store.inner, 30)
    rebuild(store.inner)
    plan = load_plan(plan_dir).with_results(store.uri, None)
    backend = LocalBackend.with_options(state_dir=plan_dir / ".hpt" / "local", plan_dir=plan_dir)
    result = run_plan(plan, backend, store, RunOptions(parallel=2), Collect())
    assert result.done == trials
    listings = store.calls[("list_versions", "rows/")] + store.calls[("list", "rows/")]
    assert 1 <= listings <= 2                     # the start, and the end when the run took long
    row_reads = store.calls[("get_versioned", "rows/")] + store.calls[("get", "rows/")]
    assert row_reads <= 3 * trials                # its own trials' rows (a few looks each), not the 30 already there
    assert describe(store.inner)["lacking"] == 0


def _put_segment(store, doc: dict, level: int = 0) -> str:
    """A segment object of any content under a name it hashes to (what a writer or an attacker can do)."""
    import hashlib
    import secrets

    data = json.dumps(doc).encode()
    key = f"{INDEX_ROWS}{level}-1-{secrets.token_hex(4)}-{hashlib.sha256(data).hexdigest()[:16]}.json"
    store.put_once(key, data)
    return key


def test_a_format_1_segment_is_still_read(tmp_path, monkeypatch):
    """Stores indexed before segments were column-major (format 1, one list per entry) read from their index."""
    store = open_store(str(tmp_path / "s"))
    rows = _fill(store, 12)
    versions = {k[5:-4]: v for k, v in store.list_versions("rows/").items()}
    files = read_rows(store)   # each row as its file holds it (its columns in the file's order)
    names, kept = shared_column_order([Entry(tid, versions[tid], r) for tid, r in files.items()])
    assert len(kept) == 12
    body = [[tid, versions[tid], *[r.get(c) for c in names]] for tid, r in reversed(files.items())]   # any order
    _put_segment(store, {"format": 1, "columns": names, "rows": body})
    assert snapshot(store).from_index == 12 and snapshot_columns(store).from_index == 12
    _same_as_every_row_file(store, monkeypatch)


@pytest.mark.parametrize("damage", ["short column", "a number", "an id that is no string", "columns twice",
                                    "versions short", "unknown format"])
def test_a_malformed_column_major_segment_is_ignored_whole(tmp_path, monkeypatch, damage):
    store = open_store(str(tmp_path / "s"))
    rows = _fill(store, 6)
    versions = {k[5:-4]: v for k, v in store.list_versions("rows/").items()}
    names = ["trial_id", "status", "mse"]
    ids = sorted(versions)
    doc = {"format": 2, "columns": names, "ids": ids, "versions": [versions[t] for t in ids],
           "values": [ids, ["done"] * 6, ["0.5"] * 6]}
    if damage == "short column":
        doc["values"][2] = ["0.5"] * 5
    elif damage == "a number":
        doc["values"][2][0] = 0.5
    elif damage == "an id that is no string":
        doc["ids"][0] = 7
    elif damage == "columns twice":
        doc["columns"] = ["trial_id", "status", "status"]
    elif damage == "versions short":
        doc["versions"] = doc["versions"][:-1]
    else:
        doc["format"] = 99
    _put_segment(store, doc)
    assert snapshot(store).from_index == 0 and snapshot_columns(store).from_index == 0
    assert describe(store)["unreadable_segments"] == 1
    _same_as_every_row_file(store, monkeypatch)
    assert len(rows) == 6


def test_any_layout_of_segments_reads_like_every_row_file(tmp_path):
    """Property: whatever segments hold — a subset of the rows, overlapping, entries for an older version of a
    row file (holding anything: another trial's row, columns missing or added), rows that are gone since, in
    either format, at any level — the rows read through the index equal reading every row file, as dicts and
    as columns (with the same column order). A format-1 segment of the writer before shared_column_order may order a
    column differently, never a value, until `hpt index --rebuild`: here they are written as it would be now."""
    import random
    import shutil

    from hypothesis import HealthCheck, given, settings, strategies as st

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), n_segments=st.integers(0, 4))
    def check(seed: int, n: int, n_segments: int) -> None:
        rnd = random.Random(seed)
        folder = tmp_path / f"s-{seed}-{n}-{n_segments}"
        shutil.rmtree(folder, ignore_errors=True)
        store = open_store(str(folder))
        _fill(store, n, failed_every=rnd.randint(2, 6))
        files = read_rows(store)
        versions = {k[5:-4]: v for k, v in store.list_versions("rows/").items()}
        writer = IndexWriter(store)
        for _ in range(n_segments):
            entries = []
            for tid in rnd.sample(sorted(files), rnd.randint(0, n)):
                if rnd.random() < 0.75:   # what the row file holds, under its version
                    entries.append(Entry(tid, versions[tid], dict(files[tid])))
                    continue
                row = dict(rnd.choice(list(files.values())))   # an older file's row: anything
                for c in rnd.sample(list(row), rnd.randint(0, 3)):
                    row.pop(c)
                if rnd.random() < 0.5:
                    row["new.col"] = rnd.choice(["", "x", "1.5"])
                entries.append(Entry(tid, "older-" + versions[tid], row))
            if rnd.random() < 0.3 and entries:   # the format written before
                names, entries = shared_column_order(sorted(entries, key=lambda e: (e.trial_id, e.version)))
                _put_segment(store, {"format": 1, "columns": names,
                                     "rows": [[e.trial_id, e.version, *[e.row.get(c) for c in names]] for e in entries]},
                             level=rnd.randint(0, 2))
            else:
                writer.append(entries, level=rnd.randint(0, 2))
        for tid in rnd.sample(sorted(files), rnd.randint(0, n // 3)):   # rows moved aside after they were indexed
            store.delete(row_key(tid))
        every = read_rows(store)
        got = snapshot(store).rows
        assert got == every
        columns = snapshot_columns(store)
        assert columns.rows() == every and columns.ids == list(every)
        assert list(columns.data) == list(dict.fromkeys(c for r in every.values() for c in r))
        shutil.rmtree(folder, ignore_errors=True)

    check()


def test_column_order_keeps_each_rows_own_order():
    """A failed row (no metrics) before a done row: the union of their columns in order of appearance would put the
    done row's metrics after the columns the failed row ended with; shared_column_order puts them where the row has them."""
    failed = Entry("t-1", "v", {"trial_id": "t-1", "status": "failed", "reason": "x", "started_at": "s"})
    done = Entry("t-2", "v", {"trial_id": "t-2", "status": "done", "reason": "", "mse": "0.5", "started_at": "s"})
    odd = Entry("t-3", "v", {"started_at": "s", "trial_id": "t-3"})   # the same columns the other way round
    names, kept = shared_column_order([failed, done, odd])
    assert names == ["trial_id", "status", "reason", "mse", "started_at"] and kept == [failed, done]
    from hpt.store.index import decode

    assert [list(e.row) for e in decode(encode([failed, done]))] == [list(failed.row), list(done.row)]
