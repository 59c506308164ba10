"""rows/ is the truth: one reader of stored rows that checks them, one builder of rows, and the store's files.

A damaged row (empty, header only, random bytes, two data lines, a trial id that is not its file's,
a metric that is not a number) reads as a failed row that says why, so `hpt apply` retries the trial
and `hpt status` / `hpt results` say so, instead of blocking the trial forever or crashing.
"""
from __future__ import annotations

import json
import os
import stat

import pytest
from results_fixtures import DOMINATE, RANGES, make_row, put_matrix, put_row
from typer.testing import CliRunner

from executor_support import attempts, fake_env, kill_leftovers, write_plan
from hpt.cli import app
from hpt.executor.backends.local import LocalBackend
from hpt.executor.events import Collect
from hpt.executor.loop import RunOptions, run_plan
from hpt.executor.plan import load_plan
from hpt.executor.status import trial_states
from hpt.schemas.manifest import TrialManifest
from hpt.schemas.row import STATUS_FAILED, build_row, parse_row_csv
from hpt.store import open_store, row_key
from hpt.store.rows import read_row, read_rows
from trial_factory import make_manifest

DAMAGE = {
    "empty": b"",
    "header only": b"trial_id,status,mse\n",
    "random bytes": bytes(range(256)) * 4,
    "two data lines": None,  # filled per trial below
}


@pytest.fixture(autouse=True)
def _no_leftover_trials(tmp_path):
    yield
    kill_leftovers(tmp_path)


def _two_lines(tid: str) -> bytes:
    return f"trial_id,status,mse\n{tid},done,0.5\n{tid},done,0.4\n".encode()


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_row_reads_as_failed_and_says_why(tmp_path, kind):
    store = open_store(str(tmp_path / "s"))
    data = DAMAGE[kind] if DAMAGE[kind] is not None else _two_lines("t-a")
    store.put_once(row_key("t-a"), data)
    row = read_row(store, "t-a")
    assert row is not None and row["trial_id"] == "t-a" and row["status"] == STATUS_FAILED
    assert "damaged row" in row["reason"] and "rows/t-a.csv" in row["reason"]
    assert read_row(store, "t-absent") is None
    assert read_rows(store) == {"t-a": row}


def test_a_row_under_another_trials_name_is_damaged(tmp_path):
    store = open_store(str(tmp_path / "s"))
    good = make_row("lstm", {"learning_rate": 0.1}, RANGES[0], mse=0.5)
    put_row(store, good)
    store.put_once(row_key("t-other"), store.get(row_key(good["trial_id"])))
    rows = read_rows(store)
    assert rows[good["trial_id"]]["status"] == "done"
    assert rows["t-other"]["status"] == STATUS_FAILED and good["trial_id"] in rows["t-other"]["reason"]


def test_a_non_numeric_metric_is_damage_and_does_not_crash_by_config(tmp_path):
    store = open_store(str(tmp_path / "s"))
    put_matrix(store, DOMINATE)
    bad = make_row("lstm", {"learning_rate": 0.5}, RANGES[0], mse="lots")
    put_row(store, bad)
    assert "mse" in read_row(store, bad["trial_id"])["reason"]
    result = CliRunner().invoke(app, ["results", store.uri, "--by", "config"])
    assert result.exit_code == 0, result.output
    doc = json.loads(CliRunner().invoke(app, ["results", store.uri, "-f", "json"]).stdout)
    assert bad["trial_id"] in {f["trial_id"] for f in doc["failed"]}


def test_results_never_lets_results_csv_override_rows(tmp_path):
    from hpt.executor.publish import ResultsPublisher

    store = open_store(str(tmp_path / "s"))
    put_matrix(store, DOMINATE)
    rows = read_rows(store)
    ResultsPublisher(store).publish()  # results.csv as `hpt apply` publishes it
    # Edited by hand: one of B's metrics made best by far in results.csv; in rows/ (the truth) one of
    # C's rows turned from done into failed.
    b_row = next(r for r in rows.values() if r["param.learning_rate"] == "0.01")
    c_row = next(r for r in rows.values() if r["param.learning_rate"] == "0.1")
    text = store.get("results.csv").decode()
    edited = text.replace(f",{b_row['mse']},", ",0.0001,", 1)
    assert edited != text
    store.put("results.csv", edited.encode())
    store.delete(row_key(c_row["trial_id"]))
    put_row(store, {**c_row, "status": "failed", "reason": "edited to failed"})
    doc = json.loads(CliRunner().invoke(app, ["results", store.uri, "-f", "json"]).stdout)
    assert {f["trial_id"] for f in doc["failed"]} == {c_row["trial_id"]}
    assert doc["n_done"] == len(rows) - 1
    assert 0.0001 not in {r.get("mse") for r in doc["rows"]}
    assert min(r["mse"] for r in doc["rows"]) == min(float(r["mse"]) for r in rows.values())


def _manifests(n: int):
    return [make_manifest("/data/none", "bag-of-words", epochs=1, seed=i, experiment="e-0123456789ab") for i in range(n)]


def _apply(tmp_path, plan_dir):
    plan = load_plan(plan_dir)
    store = open_store(str(tmp_path / "results"))
    plan = plan.with_results(store.uri, None)
    backend = LocalBackend.with_options(state_dir=plan_dir / ".hpt" / "local", plan_dir=plan_dir)
    return run_plan(plan, backend, store, RunOptions(backoff_s=0.0), Collect()), store


@pytest.mark.parametrize("kind", ["random bytes", "two data lines", "another trial's row"])
def test_reapply_retries_a_trial_whose_row_is_damaged(tmp_path, monkeypatch, kind):
    ms = _manifests(2)
    a, b = ms[0].id, ms[1].id
    for key, value in fake_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    plan_dir = write_plan(tmp_path / "plan", ms)
    first, store = _apply(tmp_path, plan_dir)
    assert first.exit_code == 0 and attempts(tmp_path, a) == 1
    data = {"random bytes": DAMAGE["random bytes"], "two data lines": _two_lines(a),
            "another trial's row": store.get(row_key(b))}[kind]
    store.put(row_key(a), data)

    states = {s.trial_id: s for s in trial_states(load_plan(plan_dir), store)}
    assert states[a].state == "failed" and "damaged row" in states[a].detail
    second, _ = _apply(tmp_path, plan_dir)
    assert second.exit_code == 0 and second.done == 1 and second.already_done == 1
    assert attempts(tmp_path, a) == 2 and attempts(tmp_path, b) == 1
    assert read_row(store, a)["status"] == "done" and read_row(store, a)["trial_id"] == a
    assert store.list("rows-failed/") == [f"rows-failed/{a}.1.csv"]  # the damaged file kept, not lost
    assert {s.state for s in trial_states(load_plan(plan_dir), store)} == {"done"}


def test_the_loops_failed_row_is_the_trainers_row(tmp_path, monkeypatch):
    ms = _manifests(1)
    for key, value in fake_env(tmp_path, {ms[0].id: "exit:3"}).items():
        monkeypatch.setenv(key, value)
    result, store = _apply(tmp_path, write_plan(tmp_path / "plan", ms))
    assert result.failed == 1
    row = parse_row_csv(store.get(row_key(ms[0].id)).decode())
    built = build_row(TrialManifest.from_dict(json.loads(ms[0].to_json())), status=STATUS_FAILED,
                      reason=row["reason"], started_at=row["started_at"], finished_at=row["finished_at"])
    assert list(row) == list(parse_row_csv(__import__("hpt.schemas.row", fromlist=["row_csv"]).row_csv(built)))
    assert {k: v for k, v in row.items() if k != "hpt_version"} == \
           {k: str(v) for k, v in built.items() if k != "hpt_version"}


def test_local_store_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        store = open_store(str(tmp_path / "s"))
        store.put_once(row_key("t-1"), b"x")
        store.put("results.csv", b"y")
    finally:
        os.umask(old)
    for key in (row_key("t-1"), "results.csv"):
        assert stat.S_IMODE(os.stat(store.url(key)).st_mode) == 0o640, key


def test_table_csv_writes_what_a_dict_writer_writes():
    """table_csv (a row a list, written by csv.writer in C) writes what csv.DictWriter(restval="") writes: the
    union of the columns in canonical order, rows by trial id, a missing or None cell blank, any text quoted."""
    import csv
    import io

    from hypothesis import given, settings, strategies as st

    from hpt.schemas.row import column_order, table_csv

    names = st.sampled_from(["trial_id", "status", "reason", "mse", "param.lr", "param.x", "loss", "zz.custom"])
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
    row = st.dictionaries(names, st.one_of(st.none(), text, st.floats(allow_nan=True), st.integers()), min_size=1)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(row, max_size=12))
    def check(rows):
        columns = column_order({c for r in rows for c in r})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
        writer.writeheader()
        for r in sorted(rows, key=lambda r: str(r.get("trial_id", ""))):
            writer.writerow({k: "" if v is None else v for k, v in r.items()})
        assert table_csv(rows) == buf.getvalue()

    check()
