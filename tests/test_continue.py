"""Continue instead of restart (issue 22, item 3): a promoted halving trial whose rung differs only in epochs
starts from its lower rung's checkpoint. The budget counts only the epochs added; every built-in architecture
continued is bit for bit an uninterrupted run on the CPU (metrics, best epoch, history, weights); through the
CLI the promoted trial's row and model equal those of the same manifest trained from scratch, also after a
kill -9 mid-continuation; a user trainer is handed the lower trial's output and may ignore it."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from trial_factory import make_manifest
from typer.testing import CliRunner

from executor_support import hpt_exe
from hpt.cli import app
from hpt.compiler.dates import Window
from hpt.compiler.fidelities import Fidelity, continues
from hpt.compiler.schedulers.halving import budget
from hpt.schemas.manifest import TrialManifest
from hpt.store import open_store, row_key
from hpt.trainer.data import prepare
from hpt.trainer.train import check_checkpoint, fit

ONE_MONTH = dict(train=("2010-11-01", "2010-12-01"), validation=("2010-12-01", "2011-01-01"))
WINDOW = [Window(index=0, train_start=dt.date(2011, 1, 1), train_end=dt.date(2011, 4, 1), valid_end=dt.date(2011, 5, 1))]


@pytest.fixture(autouse=True)
def prep_cache(tmp_path_factory, monkeypatch) -> None:
    monkeypatch.setenv("HPT_CACHE", str(tmp_path_factory.getbasetemp() / "hpt-cache"))


def test_only_rungs_that_differ_in_epochs_alone_continue():
    assert continues(Fidelity("e1", None, 1), Fidelity("e3", None, 3))
    assert continues(Fidelity("m2-e1", 2, 1), Fidelity("m2-e3", 2, 3))
    assert not continues(Fidelity("m1-e2", 1, 2), Fidelity("m2-e4", 2, 4))   # other data: restart
    assert not continues(Fidelity("e3", None, 3), Fidelity("e1", None, 1))


def test_the_budget_counts_only_the_epochs_added_and_says_the_saving():
    ladder = [Fidelity("e3", None, 3), Fidelity("e9", None, 9), Fidelity("e27", None, 27)]
    restart = budget(27, 3, ladder, WINDOW, 1)
    cont = budget(27, 3, ladder, WINDOW, 1, continuing=True)
    assert [r["epoch_months"] for r in restart] == [243, 243, 243]   # 27·3·3, 9·3·9, 3·3·27
    assert [r["epoch_months"] for r in cont] == [243, 162, 162]      # 9·3·(9−3), 3·3·(27−9)
    assert [(r.get("continued"), r.get("saved")) for r in cont] == [(None, None), ("e3", 81), ("e9", 81)]
    assert sum(r["epoch_months"] + r.get("saved", 0) for r in cont) == sum(r["epoch_months"] for r in restart)
    mixed = budget(27, 3, [Fidelity("m1-e3", 1, 3), Fidelity("m3-e3x", 3, 9)], WINDOW, 1, continuing=True)
    assert "continued" not in mixed[1]


def _compile(tmp: Path, search: dict, fidelities: list[dict], name: str = "plan") -> tuple[Path, str]:
    spec = {"architecture": "bag-of-words", "date-range": [["2010-11-01", "2010-12-01"]],
            "parameters": {"learning_rate": [0.003, 0.03]}, "fidelities": fidelities,
            "search": {"method": "halving", "eta": 2, "seed": 1, **search}}
    (tmp / f"{name}.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(app, ["compile", str(tmp / f"{name}.json"), "--out", str(tmp / name),
                                      "--today", "2026-11-26"])
    assert result.exit_code == 0, result.output
    return tmp / name, result.output


def _manifests(plan: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((plan / "trials").glob("*.json"))]


def test_compile_marks_the_lower_rung_shows_the_saving_and_continue_false_restarts(tmp_path, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    plan, text = _compile(tmp_path, {}, [{"epochs": 1}, {"epochs": 3}])
    doc = json.loads((plan / "plan.json").read_text())
    assert doc["spec"]["search"]["continue"] is True
    assert [r.get("continued") for r in doc["halving"]["rungs"]] == [None, "e1"]
    assert all(m["continuation"] == {"save": True} for m in _manifests(plan))
    assert "saved" in text and "continues from its lower rung's checkpoint" in " ".join(text.split())
    off, text = _compile(tmp_path, {"continue": False}, [{"epochs": 1}, {"epochs": 3}], "off")
    assert all("continuation" not in m for m in _manifests(off)) and "saved" not in text
    # the ids do not depend on it: continuing is not a result field
    assert sorted(m["id"] for m in _manifests(off)) == sorted(m["id"] for m in _manifests(plan))
    months, _ = _compile(tmp_path, {}, [{"months": 1, "epochs": 1}, {"epochs": 3}], "months")
    assert all("continuation" not in m for m in _manifests(months))   # whole range vs 1 month: other data
    (tmp_path / "bad.json").write_text(json.dumps({**json.loads((tmp_path / "plan.json").read_text()),
                                                   "search": {"method": "halving", "continue": "yes"}}))
    bad = CliRunner().invoke(app, ["compile", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "search.continue" in bad.output


# Small settings per built-in (tests/test_trainer.py's), dropout on where the model has it: its generator too.
BUILT_INS = {
    "bag-of-words": dict(learning_rate=0.01, dropout=0.3),
    "lstm": dict(learning_rate=0.01, hidden_size=16),
    "cnn": dict(learning_rate=0.01, num_filters=16),
    "lstm-attention": dict(learning_rate=0.01, hidden_size=16, attention_hidden_layer_size=8),
    "mdn": dict(learning_rate=0.01),
    "multitask": dict(learning_rate=0.01),
}


def _same_run(a, b) -> None:
    keys = ("mse", "loss", "mae", "train_mse", "nll", "epochs", "best_epoch", "n_params")
    assert {k: a.metrics[k] for k in keys} == {k: b.metrics[k] for k in keys}
    assert [vars(r) | {"seconds": 0} for r in a.history] == [vars(r) | {"seconds": 0} for r in b.history]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _through_bytes(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)   # as the trainer reads it from a store


@pytest.mark.parametrize("architecture", sorted(BUILT_INS))
def test_every_built_in_continued_is_bit_for_bit_an_uninterrupted_run(small_dataset, architecture):
    manifest = make_manifest(small_dataset, architecture, epochs=2, **ONE_MONTH, **BUILT_INS[architecture])
    params = manifest.params
    prepared = prepare(manifest.data["uri"], manifest.window, int(params["vocab_size"]), int(params["max_tokens"]))
    never = lambda epoch: None   # noqa: E731 — the trainer always asks (stop records)
    whole = fit(architecture, params, prepared, seed=manifest.seed, max_epochs=2, stop_after=never)
    lower = fit(architecture, params, prepared, seed=manifest.seed, max_epochs=1, stop_after=never, keep_checkpoint=True)
    state = _through_bytes(lower.checkpoint)
    assert check_checkpoint(state, params, prepared.n_train, 2) == ""
    seen: list[int] = []
    continued = fit(architecture, params, prepared, seed=manifest.seed, max_epochs=2, stop_after=never, resume=state,
                    on_epoch=lambda r: seen.append(r.epoch))
    _same_run(whole, continued)
    assert seen == [1, 2] and continued.continued_at == 1   # epoch 1 reported again, from the checkpoint


def test_a_stopped_lower_trial_continues_as_the_unstopped_run(small_dataset):
    """A stop record seen after epoch 2 truncates the lower trial to step 1, but its checkpoint is the state
    after epoch 2: continuing gives the unstopped run. A checkpoint of other params or data is refused."""
    manifest = make_manifest(small_dataset, epochs=4, **ONE_MONTH, **BUILT_INS["bag-of-words"])
    params = manifest.params
    prepared = prepare(manifest.data["uri"], manifest.window, int(params["vocab_size"]), int(params["max_tokens"]))
    whole = fit("bag-of-words", params, prepared, seed=manifest.seed, max_epochs=4, stop_after=lambda e: None)
    stopped = fit("bag-of-words", params, prepared, seed=manifest.seed, max_epochs=3, keep_checkpoint=True,
                  stop_after=lambda e: 1 if e >= 2 else None)
    assert stopped.stopped_at == 1 and stopped.metrics["epochs"] == 1 and stopped.checkpoint["epoch"] == 2
    state = _through_bytes(stopped.checkpoint)
    continued = fit("bag-of-words", params, prepared, seed=manifest.seed, max_epochs=4, resume=state,
                    stop_after=lambda e: None)
    _same_run(whole, continued)
    assert "hyperparameters differ" in check_checkpoint(state, {**params, "learning_rate": 0.5}, prepared.n_train, 4)
    assert "rows" in check_checkpoint(state, params, prepared.n_train + 1, 4)
    assert check_checkpoint({"format": 99}, params, prepared.n_train, 4)


# --- through the CLI: a halving plan on the demo slice, the real trainer ------------------------------------
SPEC = {"architecture": "bag-of-words", "date-range": [["2010-11-01", "2010-12-01"]],
        "parameters": {"learning_rate": [0.003, 0.03], "dropout": [0.3]},
        "fidelities": [{"epochs": 1}, {"epochs": 4}], "search": {"method": "halving", "eta": 2, "seed": 1}}


def _row(store_dir: Path, trial: str) -> dict[str, str]:
    return next(csv.DictReader(io.StringIO(open_store(str(store_dir)).get(row_key(trial)).decode())))


RESULT = ("mse", "loss", "train_mse", "baseline_mse", "epochs", "best_epoch", "n_params", "status", "trial_id", "config_id")


def _weights(store_dir: Path, trial: str) -> dict:
    return torch.load(io.BytesIO(open_store(str(store_dir)).get(f"models/{trial}/model.pt")), weights_only=True)


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory, small_dataset):
    """One uninterrupted halving apply (--parallel 1) and, for its promoted trial, the same manifest without
    `continuation` trained from scratch by hpt-trial into another store."""
    tmp = tmp_path_factory.mktemp("continue-cli")
    env = {**os.environ, "HPT_CACHE": str(tmp / "cache")}
    (tmp / "spec.json").write_text(json.dumps(SPEC))
    subprocess.run([hpt_exe(), "compile", str(tmp / "spec.json"), "--out", str(tmp / "plan"), "--data", str(small_dataset),
                    "--today", "2026-11-26"], check=True, capture_output=True, env=env, timeout=120)
    applied = subprocess.run([hpt_exe(), "apply", str(tmp / "plan"), "--results", str(tmp / "results"), "--parallel", "1",
                              "--backoff", "0"], capture_output=True, text=True, env=env, timeout=600)
    assert applied.returncode == 0, applied.stderr
    rounds = json.loads((tmp / "plan" / "plan.json").read_text())["rounds"]
    promoted = rounds[1]["trials"][0]
    doc = json.loads((tmp / "plan" / "trials" / f"{promoted}.json").read_text())
    fresh = {k: v for k, v in doc.items() if k != "continuation"}
    (tmp / "fresh.json").write_text(TrialManifest.from_dict(fresh).to_json())
    trained = subprocess.run([sys.executable, "-m", "hpt.trainer", str(tmp / "fresh.json"), "--results",
                              str(tmp / "fresh-results")], capture_output=True, text=True, env=env, timeout=300)
    assert trained.returncode == 0, trained.stderr
    return {"tmp": tmp, "env": env, "doc": doc, "promoted": promoted, "rounds": rounds}


def test_a_promotion_continues_and_ends_as_the_same_trial_trained_from_scratch(halving_run):
    tmp, doc, promoted = halving_run["tmp"], halving_run["doc"], halving_run["promoted"]
    lower = doc["continuation"]["from"]
    assert doc["continuation"]["epochs"] == 1 and lower in halving_run["rounds"][0]["trials"]
    results = open_store(str(tmp / "results"))
    assert results.exists(f"models/{lower}/checkpoint.pt")
    assert not results.exists(f"models/{promoted}/checkpoint.pt")   # the top rung: nothing continues from it
    log = results.get(f"logs/{promoted}.log").decode()
    assert f"continuing from {lower} after epoch 1" in log
    assert json.loads(results.get(f"models/{promoted}/metrics.json"))["continued"] == {"from": lower, "after_epoch": 1}
    continued, fresh = _row(tmp / "results", promoted), _row(tmp / "fresh-results", promoted)
    assert {k: continued[k] for k in RESULT} == {k: fresh[k] for k in RESULT}
    assert continued["epochs"] == "4"
    a, b = _weights(tmp / "results", promoted), _weights(tmp / "fresh-results", promoted)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in json.loads(results.get(f"curves/{promoted}.json"))] == [1, 2, 3, 4]   # a whole run's curve


def test_kill_9_while_a_promotion_continues_then_reapply_is_exact(halving_run, small_dataset):
    tmp, env = halving_run["tmp"], halving_run["env"]
    work = tmp / "killed"
    work.mkdir()
    (work / "spec.json").write_text(json.dumps(SPEC))
    subprocess.run([hpt_exe(), "compile", str(work / "spec.json"), "--out", str(work / "plan"), "--data",
                    str(small_dataset), "--today", "2026-11-26"], check=True, capture_output=True, env=env, timeout=120)
    results = work / "results"
    proc = subprocess.Popen([hpt_exe(), "apply", str(work / "plan"), "--results", str(results), "--parallel", "1",
                             "--backoff", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300

    def continuing() -> bool:   # the running trial's log (the local backend's, in the plan's .hpt folder)
        return any("continuing from a checkpoint" in p.read_text(errors="replace")
                   for p in (work / "plan" / ".hpt").glob(f"local/*/{halving_run['promoted']}.log"))
    try:
        while not continuing():
            assert proc.poll() is None and time.monotonic() < deadline, "apply ended before the promoted trial continued"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # apply and its trial: nothing finishes the trial but a re-apply
        proc.wait()
    assert not (results / "rows" / f"{halving_run['promoted']}.csv").exists()
    again = subprocess.run([hpt_exe(), "apply", str(work / "plan"), "--results", str(results), "--parallel", "1",
                            "--backoff", "0"], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    promoted = halving_run["promoted"]
    assert json.loads((work / "plan" / "plan.json").read_text())["rounds"] == halving_run["rounds"]
    assert {k: _row(results, promoted)[k] for k in RESULT} == {k: _row(tmp / "results", promoted)[k] for k in RESULT}
    a, b = _weights(results, promoted), _weights(tmp / "results", promoted)
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- a user trainer: handed the lower trial's output, free to ignore it -----------------------------------------
CONTINUING_SCRIPT = textwrap.dedent("""\
    #!/bin/sh
    set -eu
    start=0
    if [ -n "${HPT_TRIAL_CONTINUE_FROM:-}" ]; then start=$(cat "$HPT_TRIAL_CONTINUE_FROM/state.txt"); fi
    echo "from=${HPT_TRIAL_CONTINUE_FROM:+yes} epochs=${HPT_TRIAL_CONTINUE_EPOCHS:-} start=$start" > "$HPT_TRIAL_OUTPUT/saw.txt"
    if [ "${HPT_TRIAL_KEEP_CHECKPOINT:-}" = 1 ]; then echo "$HPT_TRIAL_EPOCHS" > "$HPT_TRIAL_OUTPUT/state.txt"; fi
    lr=$(sed 's/.*"lr":\\([0-9.e-]*\\).*/\\1/' "$HPT_TRIAL_MANIFEST")
    printf '{"mse": %s}\\n' "$(awk "BEGIN{print ($lr-0.05)^2 + 1/$HPT_TRIAL_EPOCHS}")" > "$HPT_TRIAL_METRICS"
    """)


def test_a_user_trainer_gets_the_lower_rungs_output_and_may_ignore_it(tmp_path, monkeypatch):
    from test_user_trainer import write_spec

    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "train.sh").write_text(CONTINUING_SCRIPT)
    os.chmod(project / "src" / "train.sh", 0o755)
    write_spec(project, {"command": ["./train.sh"], "source": "src"}, {"lr": [0.01, 0.05]},
               fidelities=[{"name": "short", "epochs": 2}, {"name": "long", "epochs": 6}],
               search={"method": "halving", "eta": 2, "promotion": "sync"})
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = subprocess.run([hpt_exe(), "compile", str(project / "spec.json"), "--out", str(plan)],
                              capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    assert "if the trainer continues" in " ".join(compiled.stdout.split())   # the budget's caption, however wrapped
    applied = subprocess.run([hpt_exe(), "apply", str(plan), "--results", str(results), "--parallel", "1"],
                             capture_output=True, text=True, timeout=300)
    assert applied.returncode == 0, applied.stderr
    rounds = json.loads((plan / "plan.json").read_text())["rounds"]
    store = open_store(str(results))
    saw = {t: store.get(f"models/{t}/saw.txt").decode().strip() for r in rounds for t in r["trials"]}
    assert {saw[t] for t in rounds[0]["trials"]} == {"from= epochs= start=0"}
    assert [saw[t] for t in rounds[1]["trials"]] == ["from=yes epochs=2 start=2"] * len(rounds[1]["trials"])
