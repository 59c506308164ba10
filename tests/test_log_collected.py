"""Executor-side collection for a trial image with no hpt (`trainer.collect: log`): the row is built by
`hpt apply` from the trial's log, through the real loop and store, with a backend whose trials are canned
logs and exit codes (what `docker logs` / a pod's log would hold). Done with its metrics; exit 0 without the
objective, or a malformed hpt line, is a failed row saying so; a non-zero exit fails as any trial does."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from typer.testing import CliRunner

from hpt.cli import app
from hpt.executor.backend import Backend, Phase, TrialStatus
from hpt.executor.events import Reporter
from hpt.executor.loop import RunOptions, run_plan
from hpt.executor.plan import load_plan
from hpt.schemas.row import parse_row_csv
from hpt.store import open_store, row_key
from hpt.trainer.fromlog import read_log

# lr → (log, exit code): what each trial's container printed
LOGS = {
    1: ("loading\nepoch=1 val=0.9 acc=0.5\nepoch=2 val=0.7 acc=0.6\n", 0),
    2: ("epoch=1 acc=0.4\n", 0),                                        # never reports the objective
    3: ("epoch=1 val=0.8\nTraceback: out of memory\n", 3),
    4: ('hpt:epoch {"epoch": "one"}\n', 0),                             # hpt's own line, malformed
}


@dataclass
class CannedBackend(Backend):
    """Trials that end at once with their canned log (no process: the loop's own path is under test)."""
    name = "canned-logs-test"

    @dataclass(frozen=True)
    class Options:
        pass

    options: Options = field(default_factory=Options)
    started: list = field(default_factory=list)

    def preflight(self, submissions) -> None:
        pass

    def capacity(self) -> int:
        return 1

    def submit(self, submission):
        self.started.append(submission.trial_id)
        return submission

    def poll(self, handle) -> TrialStatus:
        code = LOGS[handle.manifest.params["lr"]][1]
        return TrialStatus(Phase.SUCCEEDED, exit_code=0) if code == 0 else \
            TrialStatus(Phase.FAILED, reason=f"exit code {code}", exit_code=code)

    def cancel(self, handle) -> None:
        pass

    def logs(self, handle) -> str:
        return LOGS[handle.manifest.params["lr"]][0]

    def dry_run(self, submissions) -> str:
        return ""


class Quiet(Reporter):
    def __init__(self):
        self.events = []

    def emit(self, event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


def test_apply_builds_the_row_from_the_log_of_a_trial_with_no_hpt_inside(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    spec = {"trainer": {"command": ["/opt/train", "--lr=${trialParameters.lr}"], "collect": "log", "windows": False,
                        "metrics_from": "stdout", "image": "reg.example/team/train:1"},
            "parameters": {"lr": [1, 2, 3, 4]}, "objective": {"metric": "val", "goal": "minimize"},
            "metrics": [{"name": "val", "goal": "minimize"}, "acc"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    compiled = CliRunner().invoke(app, ["compile", str(tmp_path / "spec.json"), "--out", str(tmp_path / "plan")])
    assert compiled.exit_code == 0, compiled.output
    plan = load_plan(tmp_path / "plan").with_results(str(tmp_path / "results"))
    store = open_store(str(tmp_path / "results"))
    result = run_plan(plan, CannedBackend(), store, RunOptions(parallel=1, retries=0), Quiet(), log_reader=read_log)
    rows = {}
    for sub in plan.submissions:
        rows[sub.manifest.params["lr"]] = parse_row_csv(store.get(row_key(sub.trial_id)).decode())
    assert (rows[1]["status"], rows[1]["val"], rows[1]["acc"]) == ("done", "0.7", "0.6")   # the last report, by its collector
    assert rows[1]["objective"] == "val" and rows[1]["goal"] == "minimize" and rows[1]["param.lr"] == "1"
    assert rows[2]["status"] == "failed" and "the program's log has no 'val' (the objective)" in rows[2]["reason"]
    assert rows[3]["status"] == "failed" and rows[3]["reason"].startswith("exit code 3: ") and "out of memory" in rows[3]["reason"]
    assert rows[4]["status"] == "failed" and "log line 1" in rows[4]["reason"]
    assert (result.done, result.failed) == (1, 3)
    first = next(s.trial_id for s in plan.submissions if s.manifest.params["lr"] == 1)
    assert "epoch=2 val=0.7" in store.get(f"logs/{first}.log").decode()        # the log is kept, as for any trial


def test_read_log_is_the_collectors_reading():
    manifest = {"objective": {"metric": "val", "goal": "minimize"},
                "trainer": {"metrics_from": {"format": "stdout", "final": "best"}}}
    reports, metrics, problem = read_log(manifest, "epoch=1 val=0.5\nepoch=2 val=0.9\nnoise\n")
    assert [r.epoch for r in reports] == [1, 2] and metrics == {"val": 0.5} and problem == ""   # final: best
    reports, metrics, _ = read_log({"objective": {"metric": "mse", "goal": "minimize"}, "trainer": {}},
                                   'hpt:epoch {"epoch": 1, "mse": 2.0}\nhpt:result {"mse": 1.5}\n')
    assert [r.epoch for r in reports] == [1] and metrics == {"mse": 1.5}       # hpt's lines: the result line wins
