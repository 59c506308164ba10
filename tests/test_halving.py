"""Successive halving in rounds of immutable manifests: the pure decisions (async and sync promotion),
the compile, `hpt apply` deciding rounds, and kill -9 at several points giving exactly the uninterrupted
run's rows, rounds and promotions (a stand-in trainer whose objective depends on the config and the
fidelity, run by the real local backend)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from executor_support import hpt_exe, kill_leftovers
from hpt.cli import app
from hpt.compiler.schedulers.halving import promote, promote_async, rung_sizes, slots
from hpt.compiler.decisions import score
from hpt.store import open_store

TODAY = "2026-11-26"
SPEC = {
    "architecture": "bag-of-words", "date-range": [["2010-09-01", "2010-12-01"], ["2011-03-01", "2011-06-01"]],
    "parameters": {"learning_rate": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1], "hidden_size": [16, 64]},
    "search": {"method": "halving", "seed": 1},
    "fidelities": [{"name": "m1-e2", "months": 1, "epochs": 2}, {"name": "m2-e4", "months": 2, "epochs": 4},
                   {"name": "m3-e8", "months": 3, "epochs": 8}],
}
SYNC = {**SPEC, "search": {"method": "halving", "seed": 1, "promotion": "sync"}}   # SPEC is async: the default

# The objective is best near learning_rate 0.003 and hidden 64, differs per window and fidelity
# (so the average over windows matters), and is a pure function of the manifest.
STAND_IN = textwrap.dedent('''
    import hashlib, json, math, os, sys, time
    from hpt.schemas.row import build_row, row_csv
    from hpt.store import open_store, row_key
    path, results = sys.argv[1], sys.argv[sys.argv.index("--results") + 1]
    m = json.load(open(path))
    counts = os.environ["FAKE_TRIAL_COUNTS"]
    os.makedirs(counts, exist_ok=True)
    with open(os.path.join(counts, m["id"]), "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    time.sleep(float(os.environ.get("STAND_IN_SLEEP", "0")))
    p = m["params"]
    wobble = int(hashlib.sha256((m["id"]).encode()).hexdigest()[:6], 16) / 0xFFFFFF - 0.5
    mse = (math.log10(p["learning_rate"]) + 2.5) ** 2 + 0.05 * (64 / p["hidden_size"]) + 0.3 * wobble / m["budget"]["epochs"]
    if str(p["learning_rate"]) == os.environ.get("STAND_IN_FAIL_LR") and m["budget"]["fidelity"] == "m1-e2":
        row = build_row(m, status="failed", reason="diverged", started_at="2026-01-01T00:00:00Z",
                        finished_at="2026-01-01T00:00:01Z")
    else:
        row = build_row(m, status="done", metrics={"mse": round(mse, 6), "train_time_s": m["budget"]["epochs"]},
                        started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z")
    open_store(results).put_once(row_key(m["id"]), row_csv(row).encode())
''')


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    yield
    kill_leftovers(tmp_path)


def stand_in_env(tmp: Path, sleep: float = 0.0) -> dict[str, str]:
    script = tmp / "fake_trial.py"   # the name kill_leftovers looks for
    script.write_text(STAND_IN, encoding="utf-8")
    return {**os.environ, "HPT_TRIAL_COMMAND": f"{sys.executable} {script}", "FAKE_TRIAL_COUNTS": str(tmp / "counts"),
            "STAND_IN_SLEEP": str(sleep), "HPT_DEMO_DATA": str(tmp / "demo-not-built")}


def compile_plan(tmp: Path, name: str, spec=SPEC) -> Path:
    (tmp / f"{name}.json").write_text(json.dumps(spec), encoding="utf-8")
    result = CliRunner().invoke(app, ["compile", str(tmp / f"{name}.json"), "--out", str(tmp / name), "--today", TODAY,
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    return tmp / name


def apply(plan: Path, results: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), "apply", str(plan), "--results", str(results), "--format", "json", "--backoff", "0",
                           *extra], env=env, capture_output=True, text=True, timeout=300)


def outcome(plan: Path, results: Path) -> tuple:
    """What a run decided and produced: the rounds, every manifest's bytes, every row's identity and objective."""
    doc = json.loads((plan / "plan.json").read_text())
    manifests = {p.name: p.read_bytes() for p in sorted((plan / "trials").glob("*.json"))}
    store = open_store(str(results))
    rows = {}
    for key in store.list("rows/"):
        text = store.get(key).decode()
        header, line = text.splitlines()
        row = dict(zip(header.split(","), line.split(",")))
        rows[row["trial_id"]] = (row["config_id"], row["fidelity"], row["mse"], row["status"])
    return doc["rounds"], doc["trials"], manifests, rows


# --- the pure decision ------------------------------------------------------------------------

def test_rung_sizes_shrink_by_eta_and_keep_one():
    assert rung_sizes(27, 3, 4) == [27, 9, 3, 1]
    assert rung_sizes(12, 3, 3) == [12, 4, 1]
    assert rung_sizes(2, 3, 3) == [2, 1, 1]
    assert rung_sizes(10, 2, 2) == [10, 5]


def test_promote_takes_the_top_over_eta_best_first_ties_by_config():
    scores = {"c-b": 1.0, "c-a": 1.0, "c-c": 0.5, "c-d": 3.0, "c-e": 2.0, "c-f": 0.7}
    assert [p["config"] for p in promote(scores, "minimize", 3)] == ["c-c", "c-f"]
    assert [p["config"] for p in promote(scores, "minimize", 2)] == ["c-c", "c-f", "c-a"]   # tie: c-a before c-b
    assert [p["config"] for p in promote(scores, "maximize", 3)] == ["c-d", "c-e"]
    assert promote({"c-a": 1.0}, "minimize", 3)[0]["rank"] == 1


def test_async_slots_open_in_step_with_the_rung_and_the_last_when_it_is_complete():
    assert [slots(m, 12, 4) for m in range(13)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    assert [slots(m, 4, 1) for m in range(5)] == [0, 0, 0, 0, 1]      # the top rung: only once complete
    assert [slots(m, 10, 3) for m in range(11)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert all(slots(n, n, cap) == cap for n in range(1, 30) for cap in range(1, n + 1))


def test_async_promotes_the_best_finished_not_yet_promoted_up_to_the_open_slots():
    scores = {"c-a": 1.0, "c-b": 0.5, "c-c": 2.0}
    assert promote_async(scores, set(), 12, 4, "minimize") == [{"config": "c-b", "rank": 1, "score": 0.5}]
    assert promote_async(scores, {"c-b"}, 12, 4, "minimize") == []          # one slot open, filled
    more = {**scores, "c-d": 0.1, "c-e": 3.0, "c-f": 0.3}
    # two slots at 6 finished: c-b already up, so the best of the rest (c-d, better than c-b now) follows
    assert promote_async(more, {"c-b"}, 12, 4, "minimize") == [{"config": "c-d", "rank": 1, "score": 0.1}]
    assert [p["config"] for p in promote_async(more, set(), 12, 4, "maximize")] == ["c-e", "c-c"]
    ties = {"c-b": 1.0, "c-a": 1.0, "c-c": 1.0}
    assert [p["config"] for p in promote_async(ties, set(), 3, 1, "minimize")] == ["c-a"]   # ties: smaller id
    # the rung complete: every slot open, the best config always among the promoted
    full = {f"c-{i:02d}": float(i % 5) for i in range(12)}
    up = promote_async(full, set(), 12, 4, "minimize")
    assert len(up) == 4 and up[0]["config"] == "c-00"


def test_score_averages_over_windows_and_waits_for_every_trial():
    manifests = [{"id": "t-1", "config": "c-a"}, {"id": "t-2", "config": "c-a"}, {"id": "t-3", "config": "c-b"}]
    rows = {"t-1": {"status": "done", "mse": "1.0"}, "t-2": {"status": "done", "mse": "3.0"},
            "t-3": {"status": "done", "mse": "nan"}}
    objective = {"metric": "mse", "goal": "minimize"}
    assert score(manifests, rows, objective) == {"c-a": 2.0, "c-b": math.inf}   # NaN is the worst, not the best
    assert score(manifests, {**rows, "t-2": {"status": "failed", "mse": ""}}, objective) is None
    assert score(manifests, {k: v for k, v in rows.items() if k != "t-3"}, objective) is None


# --- compile ----------------------------------------------------------------------------------

def test_compile_writes_round_one_and_the_budget_of_the_rest(tmp_path):
    plan = compile_plan(tmp_path, "plan")
    doc = json.loads((plan / "plan.json").read_text())
    assert [r["trials"] for r in doc["halving"]["rungs"]] == [24, 8, 2]
    assert doc["rounds"][0]["round"] == 1 and doc["rounds"][0]["fidelity"] == "m1-e2"
    assert len(doc["rounds"][0]["configs"]) == 12 and doc["trials"] == doc["rounds"][0]["trials"]
    budgets = {json.loads(p.read_text())["budget"]["fidelity"] for p in (plan / "trials").glob("*.json")}
    assert budgets == {"m1-e2"} and len(list((plan / "trials").glob("*.json"))) == 24


@pytest.mark.parametrize("spec, where", [
    ({k: v for k, v in SPEC.items() if k != "fidelities"}, "search.method"),
    ({**SPEC, "search": {"method": "halving", "eta": 1}}, "search.eta"),
    ({**SPEC, "search": {"method": "grid", "eta": 3}}, "search.eta"),
    ({**{k: v for k, v in SPEC.items() if k != "search"}, "early_terminate": {"type": "hyperband", "eta": 1}},
     "early_terminate.eta"),
])
def test_bad_halving_input_exits_2_naming_the_key(tmp_path, spec, where):
    (tmp_path / "s.json").write_text(json.dumps(spec), encoding="utf-8")
    result = CliRunner().invoke(app, ["compile", str(tmp_path / "s.json"), "--out", str(tmp_path / "p"), "--today", TODAY])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"error: {where}: "), result.stderr


def test_wandb_hyperband_is_halving(tmp_path):
    wandb = {k: v for k, v in SPEC.items() if k != "search"} | {"method": "grid", "early_terminate": {"type": "hyperband", "eta": 3}}
    hpt = {**SPEC, "search": {"method": "halving", "seed": 0, "eta": 3}}
    a, b = compile_plan(tmp_path, "wandb", wandb), compile_plan(tmp_path, "hpt", hpt)
    assert (a / "plan.json").read_bytes() == (b / "plan.json").read_bytes()


# --- apply ------------------------------------------------------------------------------------

def test_apply_decides_rounds_and_promotes_the_best(tmp_path):
    plan = compile_plan(tmp_path, "plan", SYNC)
    proc = apply(plan, tmp_path / "results", stand_in_env(tmp_path), "--parallel", "2")
    assert proc.returncode == 0, proc.stderr
    rounds, trials, manifests, rows = outcome(plan, tmp_path / "results")
    assert [(r["round"], r["fidelity"], len(r["configs"]), len(r["trials"])) for r in rounds] == \
        [(1, "m1-e2", 12, 24), (2, "m2-e4", 4, 8), (3, "m3-e8", 1, 2)]
    assert len(rows) == 34 == len(trials) == len(manifests) and all(r[3] == "done" for r in rows.values())
    # the winner is the config the stand-in makes best: learning_rate 0.003, hidden 64
    winner = rounds[-1]["configs"][0]
    params = {json.loads(b)["config"]: json.loads(b)["params"] for b in manifests.values()}
    assert (params[winner]["learning_rate"], params[winner]["hidden_size"]) == (0.003, 64)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["round"] for e in events if e.get("event") == "round"] == [2, 3]
    # one scheduler run for the whole search: one start, one end, the rounds' trials added to it
    assert [e["event"] for e in events if e["event"] in ("run-started", "run-finished")] == ["run-started", "run-finished"]
    assert [len(e["trial_ids"]) for e in events if e["event"] == "trials-added"] == [8, 2]
    assert events[-1]["total"] == 34 and events[-1]["done"] == 34
    # promoted configs are the best of their rung by the mean over both windows
    by_config: dict[str, list[float]] = {}
    for config, fidelity, mse, _ in rows.values():
        if fidelity == "m1-e2":
            by_config.setdefault(config, []).append(float(mse))
    means = sorted(by_config, key=lambda c: (sum(by_config[c]) / 2, c))
    assert rounds[1]["configs"] == means[:4]
    # round 2's trials are exactly those a full fidelity plan runs for those configs (same ids; the
    # manifests differ only in the experiment they belong to)
    full = compile_plan(tmp_path, "full", {**SPEC, "search": {"method": "grid", "seed": 1}})
    for tid in rounds[1]["trials"]:
        ours, theirs = json.loads(manifests[f"{tid}.json"]), json.loads((full / "trials" / f"{tid}.json").read_text())
        assert ours.pop("experiment") != theirs.pop("experiment") and ours == theirs
    status = subprocess.run([hpt_exe(), "status", str(plan), "--results", str(tmp_path / "results"), "--format", "json"],
                            env=stand_in_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)["rounds"]
    assert [(r["round"], r["fidelity"], r["configs"], r["states"]) for r in shown] == \
        [(1, "m1-e2", 12, {"done": 24}), (2, "m2-e4", 4, {"done": 8}), (3, "m3-e8", 1, {"done": 2})]
    assert shown[2]["promoted"][0]["config"] == winner and shown[1]["scored"] == 12
    assert shown[2]["promoted"][0]["params"] == {"hidden_size": 64, "learning_rate": 0.003}   # what varies
    assert [r["promotion"] for r in shown] == [None, "sync", "sync"]
    table = subprocess.run([hpt_exe(), "status", str(plan), "--results", str(tmp_path / "results")],
                           env={**stand_in_env(tmp_path), "COLUMNS": "200"}, capture_output=True, text=True, timeout=120)
    assert "4 of 12: " + rounds[1]["configs"][0] in table.stdout, table.stdout
    assert f"{winner} hidden_size=64 learning_rate=0.003 (" in table.stdout, table.stdout   # promoted, with its params
    header = next(line for line in table.stdout.splitlines() if " trial " in line and " state " in line)
    assert "attempt" not in header   # the trial table: no always-empty column
    assert "successive halving (sync promotion), eta 3" in table.stdout, table.stdout
    # hpt results: each row's round and fidelity (the rounds copied into the store by apply)
    shown = subprocess.run([hpt_exe(), "results", str(tmp_path / "results"), "--format", "csv"],
                           env=stand_in_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    import csv as _csv
    import io as _io
    table_rows = list(_csv.DictReader(_io.StringIO(shown.stdout)))
    of_trial = {t: r["round"] for r in rounds for t in r["trials"]}
    assert len(table_rows) == 34
    assert all(int(float(r["round"])) == of_trial[r["trial_id"]] for r in table_rows)
    assert {(int(float(r["round"])), r["fidelity"]) for r in table_rows} == {(1, "m1-e2"), (2, "m2-e4"), (3, "m3-e8")}
    # the report shows which configs were promoted where
    report = subprocess.run([hpt_exe(), "report", str(tmp_path / "results"), "--out", str(tmp_path / "r.html"), "--no-curves"],
                            env=stand_in_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text()
    assert "Rounds of the adaptive search" in page and "best 4 of 12, promoted" in page and "best 1 of 4, promoted" in page
    assert "learning_rate=0.003" in page or "lr=0.003" in page, page[page.index("Rounds of"):][:2000]
    # a re-apply has nothing to do and decides nothing new
    again = apply(plan, tmp_path / "results", stand_in_env(tmp_path))
    assert again.returncode == 0, again.stderr
    assert outcome(plan, tmp_path / "results") == (rounds, trials, manifests, rows)


def test_dry_run_shows_round_one_and_the_budget(tmp_path):
    plan = compile_plan(tmp_path, "plan")
    proc = subprocess.run([hpt_exe(), "apply", str(plan), "--results", str(tmp_path / "r"), "--dry-run"],
                          env={**stand_in_env(tmp_path), "COLUMNS": "250"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 24           # round 1's commands, exactly
    assert "≤ 34" in proc.stderr and "m3-e8" in proc.stderr        # the worst case of the rest
    assert "within the same upper bound" in proc.stderr and "async promotion" in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run (--parallel 1) per promotion mode: what every killed-and-resumed run must end with."""
    done: dict[str, tuple] = {}

    def run(spec: dict) -> tuple:
        mode = spec["search"].get("promotion", "async")
        if mode in done:
            return done[mode]
        tmp = tmp_path_factory.mktemp(f"uninterrupted-{mode}")
        old = os.environ.get("HPT_DEMO_DATA")
        os.environ["HPT_DEMO_DATA"] = str(tmp / "demo-not-built")
        try:
            reference = compile_plan(tmp, "reference", spec)
            proc = apply(reference, tmp / "results", stand_in_env(tmp), "--parallel", "1")
            assert proc.returncode == 0, proc.stderr
            done[mode] = outcome(reference, tmp / "results")
            return done[mode]
        finally:
            kill_leftovers(tmp)
            if old is None:
                os.environ.pop("HPT_DEMO_DATA")
            else:
                os.environ["HPT_DEMO_DATA"] = old

    return run


@pytest.mark.parametrize("spec", [SPEC, SYNC], ids=["async", "sync"])
@pytest.mark.parametrize("kill_after", [3, 24, 29])
def test_kill_9_at_any_point_then_reapply_gives_the_uninterrupted_run(tmp_path, kill_after, spec, uninterrupted):
    """kill -9 apply (--parallel 1) once `kill_after` rows exist (mid rung 0; sync: as round 1 ends and
    round 2 is being decided; later still), re-apply: the rounds, promotions, manifests and rows equal an
    uninterrupted run's — for async promotion too, whose decisions depend on the order trials finish in."""
    expected = uninterrupted(spec)

    plan = compile_plan(tmp_path, "plan", spec)
    results = tmp_path / "results"
    env = stand_in_env(tmp_path, sleep=0.05)
    proc = subprocess.Popen([hpt_exe(), "apply", str(plan), "--results", str(results), "--parallel", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows_dir = results / "rows"
    deadline = time.monotonic() + 120
    while not (rows_dir.is_dir() and len(list(rows_dir.glob("*.csv"))) >= kill_after):
        assert proc.poll() is None and time.monotonic() < deadline, "apply ended before the kill point"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = apply(plan, results, stand_in_env(tmp_path), "--parallel", "1")
    assert again.returncode == 0, again.stderr
    rounds, trials, manifests, rows = outcome(plan, results)
    ref_rounds, ref_trials, ref_manifests, ref_rows = expected
    assert rounds == ref_rounds and trials == ref_trials
    # the experiment id is the same (same spec, same month), so the bytes are too
    assert manifests == ref_manifests
    assert rows == ref_rows


def test_async_promotes_before_the_cheapest_rung_is_done(tmp_path):
    """The default, async: a config moves up as soon as enough of its rung has finished; the next fidelity's
    trials run (first: a higher rung waits less) while the cheapest rung's are still pending, and the search
    stays inside the synchronous budget."""
    plan = compile_plan(tmp_path, "plan")
    doc = json.loads((plan / "plan.json").read_text())
    assert doc["spec"]["search"]["promotion"] == "async" and doc["halving"]["promotion"] == "async"
    first = doc["rounds"][0]
    proc = apply(plan, tmp_path / "results", stand_in_env(tmp_path), "--parallel", "1")
    assert proc.returncode == 0, proc.stderr
    rounds, trials, manifests, rows = outcome(plan, tmp_path / "results")
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    started = [e["trial_id"] for e in events if e["event"] == "trial-started"]
    # round 2 is decided after 3 of 12 configs (6 of 24 trials, config by config) finished, and runs next
    assert rounds[1]["rung"] == 1 and rounds[1]["scored"] == 3 and rounds[1]["promotion"] == "async"
    assert started.index(rounds[1]["trials"][0]) == 6 and started.index(first["trials"][-1]) > 6
    # its config is the best of those 3 by the mean over both windows
    by_config: dict[str, list[float]] = {}
    for config, fidelity, mse, _ in rows.values():
        if fidelity == "m1-e2" and config in first["configs"][:3]:
            by_config.setdefault(config, []).append(float(mse))
    assert rounds[1]["configs"] == [min(by_config, key=lambda c: (sum(by_config[c]) / 2, c))]
    # within the budget: 4 configs reach m2-e4 and 1 reaches m3-e8, as the synchronous rule would allow
    per_rung: dict[int, int] = {}
    for r in rounds:
        per_rung[r["rung"]] = per_rung.get(r["rung"], 0) + len(r["configs"])
    assert per_rung == {0: 12, 1: 4, 2: 1} and len(rows) == 34 and len(rounds) > 3
    winner = json.loads(manifests[f"{rounds[-1]['trials'][0]}.json"])["params"]
    assert (winner["learning_rate"], winner["hidden_size"]) == (0.003, 64)
    status = subprocess.run([hpt_exe(), "status", str(plan), "--results", str(tmp_path / "results")],
                            env={**stand_in_env(tmp_path), "COLUMNS": "200"}, capture_output=True, text=True, timeout=120)
    assert "successive halving (async promotion), eta 3" in status.stdout and "1 of 3 finished: " in status.stdout, status.stdout
    # hpt results: each row's round and fidelity; the report says how each promotion was made
    shown = subprocess.run([hpt_exe(), "results", str(tmp_path / "results"), "--format", "json"],
                           env=stand_in_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    of_trial = {t: (r["round"], r["fidelity"]) for r in rounds for t in r["trials"]}
    assert sorted((r["trial_id"], (r["round"], r["fidelity"])) for r in json.loads(shown.stdout)["rows"]) == \
        sorted(of_trial.items())
    report = subprocess.run([hpt_exe(), "report", str(tmp_path / "results"), "--out", str(tmp_path / "r.html"), "--no-curves"],
                            env=stand_in_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert "best 1 of the 3 finished, promoted at once (async)" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("search, where", [
    ({"method": "halving", "promotion": "eager"}, "search.promotion"),
    ({"method": "grid", "promotion": "async"}, "search.promotion"),
])
def test_bad_promotion_exits_2_naming_the_key(tmp_path, search, where):
    (tmp_path / "s.json").write_text(json.dumps({**SPEC, "search": search}), encoding="utf-8")
    result = CliRunner().invoke(app, ["compile", str(tmp_path / "s.json"), "--out", str(tmp_path / "p"), "--today", TODAY])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {where}: "), result.stderr


def test_halving_with_results_in_gcs(tmp_path, gcs_bucket):
    """The same rounds with the store in gs:// (the real client against fake-gcs-server): rows, the rounds
    copy and the round column all go through the store."""
    spec = {**SPEC, "date-range": SPEC["date-range"][:1]}   # async promotion, the default
    plan = compile_plan(tmp_path, "plan", spec)
    results = gcs_bucket + "/halving"
    proc = subprocess.run([hpt_exe(), "apply", str(plan), "--results", results, "--format", "json", "--parallel", "2"],
                          env=stand_in_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rounds, trials, manifests, rows = outcome(plan, results)
    per_rung: dict[int, int] = {}
    for r in rounds:
        per_rung[r["rung"]] = per_rung.get(r["rung"], 0) + len(r["configs"])
    assert per_rung == {0: 12, 1: 4, 2: 1} and len(rows) == 17
    assert open_store(results).list("rounds/") == [f"rounds/{json.loads((plan / 'plan.json').read_text())['experiment']}.json"]
    shown = subprocess.run([hpt_exe(), "results", results, "--format", "json"], env=stand_in_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    of_trial = {t: r["round"] for r in rounds for t in r["trials"]}
    assert {r["trial_id"]: r["round"] for r in json.loads(shown.stdout)["rows"]} == of_trial


def test_a_user_trainer_works_unchanged_with_halving(tmp_path):
    """The issue-11 trainer protocol: a shell-script trainer halved over two fidelities, as written."""
    from test_user_trainer import shell_project, write_spec

    project = shell_project(tmp_path)
    write_spec(project, {"command": ["./train.sh"], "source": "src"}, {"lr": [0.01, 0.05, 0.2], "depth": [1, 2]},
               fidelities=[{"name": "short", "months": 1}, {"name": "long", "months": 2}],
               search={"method": "halving", "promotion": "sync"})
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = subprocess.run([hpt_exe(), "compile", str(project / "spec.json"), "--out", str(plan)],
                              capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    applied = subprocess.run([hpt_exe(), "apply", str(plan), "--results", str(results), "--parallel", "2"],
                             capture_output=True, text=True, timeout=300)
    assert applied.returncode == 0, applied.stderr
    rounds = json.loads((plan / "plan.json").read_text())["rounds"]
    assert [(r["fidelity"], len(r["configs"])) for r in rounds] == [("short", 6), ("long", 2)]
    winner = json.loads((plan / "trials" / f"{rounds[1]['trials'][0]}.json").read_text())
    assert winner["params"] == {"lr": 0.05, "depth": 1} and winner["trainer"]["command"] == ["./train.sh"]


def test_a_crash_between_a_rounds_manifests_and_plan_json_redecides_the_same_bytes(tmp_path):
    """kill -9 after the round's manifests are written but before plan.json lists them: the next decision
    is made again from the same rows and writes the same files, byte for byte."""
    from hpt.compiler.rounds import next_round

    plan = compile_plan(tmp_path, "plan", SYNC)
    before = (plan / "plan.json").read_bytes()
    doc = json.loads(before)
    rows = {}
    for tid in doc["trials"]:
        m = json.loads((plan / "trials" / f"{tid}.json").read_text())
        rows[tid] = {"status": "done", "mse": repr(abs(math.log10(m["params"]["learning_rate"]) + 2.5) + m["seed"] % 7 / 100)}
    assert next_round(plan, {k: v for k, v in rows.items() if k != doc["trials"][-1]}) is None   # not all done: wait
    assert (plan / "plan.json").read_bytes() == before
    first = next_round(plan, rows)
    after = {p.name: p.read_bytes() for p in sorted(plan.rglob("*.json"))}
    (plan / "plan.json").write_bytes(before)     # as if the crash came before plan.json was replaced
    again = next_round(plan, rows)
    assert again == first and {p.name: p.read_bytes() for p in sorted(plan.rglob("*.json"))} == after
    assert next_round(plan, rows) is None        # round 2 is not done yet: nothing more to decide


@pytest.mark.parametrize("backend", ["docker", "k8s"])
def test_every_backend_dry_runs_round_one_exactly(tmp_path, monkeypatch, backend, gcs_bucket):
    """A round is only manifests: docker and k8s render round 1's trials like any plan's (no daemon, no cluster
    needed for a dry run), and the budget of the rest is printed beside them."""
    plan = compile_plan(tmp_path, "plan")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(app, ["apply", str(plan), "--backend", backend, "--results", gcs_bucket, "--dry-run"])
    assert result.exit_code == 0, result.output
    round_one = json.loads((plan / "plan.json").read_text())["rounds"][0]["trials"]
    assert all(tid in result.stdout for tid in round_one)
    assert "24 of 24 trial(s) would run" in result.stderr and "≤ 34" in result.stderr


def test_one_scheduler_run_per_apply_its_status_never_says_finished_between_rounds(tmp_path, monkeypatch):
    """The rounds are added to the running scheduler (its grow hook): while a round is being added,
    runs/<experiment>.json still says the apply is running, and each round is in plan.json before any
    of its trials starts."""
    import hpt
    from hpt.executor.events import Collect

    plan = compile_plan(tmp_path, "plan")
    for key, value in stand_in_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    results = tmp_path / "results"
    experiment = json.loads((plan / "plan.json").read_text())["experiment"]
    seen: list[tuple] = []

    class Watch(Collect):
        def emit(self, event):
            super().emit(event)
            if event["event"] == "trials-added":
                runs = json.loads((results / "runs" / f"{experiment}.json").read_text())
                listed = json.loads((plan / "plan.json").read_text())["trials"]
                started = {e["trial_id"] for e in self.events if e["event"] == "trial-started"}
                seen.append((runs["finished"], set(event["trial_ids"]) <= set(listed), started & set(event["trial_ids"])))

    watch = Watch()
    run = hpt.apply(plan, results=str(results), parallel=2, backoff=0, reporter=watch)
    assert run.exit_code == 0 and run.total == 34 and run.done == 34
    assert len(seen) >= 2 and all(entry == (False, True, set()) for entry in seen), seen
    assert [e["event"] for e in watch.events].count("run-started") == 1
    assert json.loads((results / "runs" / f"{experiment}.json").read_text())["finished"] is True


def test_queue_order_runs_higher_rungs_first_then_rounds_then_plan_order():
    from hpt.executor.plan import queue_order
    from hpt.schemas.plan import Plan

    ids = [f"t-{i:016x}" for i in range(6)]
    plan = Plan(experiment="e-x", hpt_version="0", month="2026-11", reference_date="2026-11-01", spec={}, windows=[],
                counts={}, values={}, warnings=[], trials=ids, digests={t: "0" * 64 for t in ids},
                rounds=[{"round": 1, "rung": 0, "fidelity": "a", "configs": [], "trials": ids[:3]},
                        {"round": 2, "rung": 1, "fidelity": "b", "configs": [], "trials": ids[3:4]},
                        {"round": 3, "rung": 2, "fidelity": "c", "configs": [], "trials": ids[4:5]},
                        {"round": 4, "rung": 1, "fidelity": "b", "configs": [], "trials": ids[5:]}])
    order = queue_order(plan)
    assert sorted(ids, key=order.__getitem__) == [ids[4], ids[3], ids[5], ids[0], ids[1], ids[2]]
    flat = Plan(**{**plan.__dict__, "rounds": None})
    assert sorted(reversed(ids), key=queue_order(flat).__getitem__) == ids


def test_min_configs_is_trials_for_halving(tmp_path):
    """The issue's spelling: `min_configs` compiles to the very plan `trials` does; both, differing, exit 2."""
    a = compile_plan(tmp_path, "a", {**SPEC, "search": {"method": "halving", "seed": 1, "min_configs": 6}})
    b = compile_plan(tmp_path, "b", {**SPEC, "search": {"method": "halving", "seed": 1, "trials": 6}})
    assert (a / "plan.json").read_bytes() == (b / "plan.json").read_bytes()
    assert len(json.loads((a / "plan.json").read_text())["rounds"][0]["configs"]) == 6
    for search in ({"method": "halving", "min_configs": 6, "trials": 5}, {"method": "random", "min_configs": 6}):
        (tmp_path / "s.json").write_text(json.dumps({**SPEC, "search": search}), encoding="utf-8")
        result = CliRunner().invoke(app, ["compile", str(tmp_path / "s.json"), "--out", str(tmp_path / "p"), "--today", TODAY])
        assert result.exit_code == 2 and result.stderr.startswith("error: search.min_configs: "), result.stderr
    same = compile_plan(tmp_path, "c", {**SPEC, "search": {"method": "halving", "seed": 1, "min_configs": 6, "trials": 6}})
    assert (same / "plan.json").read_bytes() == (a / "plan.json").read_bytes()


def test_the_progress_bar_grows_with_each_round():
    import io

    from rich.console import Console

    from hpt.executor.events import RichProgress

    bar = RichProgress(Console(file=io.StringIO(), force_terminal=False))
    bar.emit({"event": "run-started", "to_run": 24})
    bar.emit({"event": "trial-started", "trial_id": "t-1"})
    bar.emit({"event": "trial-finished", "trial_id": "t-1"})
    bar.emit({"event": "trials-added", "trial_ids": ["t-2", "t-3"], "total": 26})
    task = bar.progress.tasks[0]
    assert (task.total, task.completed) == (26, 1)
    bar.close()


def test_an_interrupted_run_decides_no_more_rounds(tmp_path, monkeypatch):
    """Ctrl-C as the 6th trial finishes — the moment 3 configs are finished and async halving's first
    promotion slot opens: the run stops without deciding it (a decision must not outrun the trials that
    would run it); the re-apply decides it at its start and ends like an uninterrupted run."""
    import hpt
    from hpt.executor.events import Collect

    plan = compile_plan(tmp_path, "plan")
    for key, value in stand_in_env(tmp_path).items():
        monkeypatch.setenv(key, value)

    class CtrlC(Collect):
        def emit(self, event):
            super().emit(event)
            if event["event"] == "trial-finished" and sum(e["event"] == "trial-finished" for e in self.events) == 6:
                os.kill(os.getpid(), signal.SIGINT)

    watch = CtrlC()
    run = hpt.apply(plan, results=str(tmp_path / "results"), parallel=1, backoff=0, reporter=watch)
    assert run.interrupted and run.done == 6
    assert "trials-added" not in [e["event"] for e in watch.events]
    assert len(json.loads((plan / "plan.json").read_text())["rounds"]) == 1
    again = hpt.apply(plan, results=str(tmp_path / "results"), parallel=1, backoff=0)
    assert again.exit_code == 0 and again.total == 34
    rounds = json.loads((plan / "plan.json").read_text())["rounds"]
    assert rounds[1]["scored"] == 3 and len(rounds[1]["configs"]) == 1


def test_a_failed_config_is_never_promoted_and_its_rung_never_completes(tmp_path):
    """Async halving goes on without the configs whose trials failed; their rung never completes, so its
    last promotion slot stays shut and apply exits 1 (a re-apply retries them)."""
    plan = compile_plan(tmp_path, "plan")
    proc = apply(plan, tmp_path / "results", {**stand_in_env(tmp_path), "STAND_IN_FAIL_LR": "0.1"},
                 "--parallel", "1", "--retries", "0")
    assert proc.returncode == 1, proc.stderr
    rounds, trials, manifests, rows = outcome(plan, tmp_path / "results")
    params = {json.loads(b)["config"]: json.loads(b)["params"] for b in manifests.values()}
    failed = {c for c, p in params.items() if p["learning_rate"] == 0.1}
    assert len(failed) == 2 and all(not failed & set(r["configs"]) for r in rounds[1:])
    per_rung: dict[int, int] = {}
    for r in rounds:
        per_rung[r["rung"]] = per_rung.get(r["rung"], 0) + len(r["configs"])
    assert per_rung == {0: 12, 1: 3}   # 10 of 12 finished: slots 1-3 open, the 4th (the rung complete) never
