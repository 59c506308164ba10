"""Progress where there is no terminal (a Jenkins console, nohup, `| tee`, a pod's log): one timestamped
line per event, flushed at once, never a bar; `--format json` unchanged. The apply test is a real `hpt`
subprocess with stdout and stderr redirected to files, read while the run is still going."""
from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hpt.commands.image as image_command
from executor_support import child_env, fake_env, hpt_exe, kill_leftovers, write_plan
from hpt.cli import app
from hpt.executor.events import PlainLines
from trial_factory import make_manifest

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_leftover_trials(tmp_path):
    yield
    kill_leftovers(tmp_path)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _wait(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_apply_redirected_to_files_shows_a_line_per_finished_trial_while_it_runs(tmp_path):
    ms = [make_manifest("/data/none", "bag-of-words", epochs=1, seed=i, experiment="e-abcdefabcdef") for i in range(4)]
    ids = [m.id for m in ms]
    # Two trials finish, one fails, one hangs: the run is still going while we read the log.
    env = child_env(fake_env(tmp_path, {ids[0]: "ok", ids[1]: "sleep:0.3", ids[2]: "exit:3", ids[3]: "hang"}))
    env["HPT_PROGRESS_EVERY_S"] = "1"
    plan_dir = write_plan(tmp_path / "plan", ms)
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        apply = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", str(tmp_path / "results"),
                                  "--parallel", "2", "--retries", "0"], env=env, stdout=stdout, stderr=stderr)
    try:
        def finished_trials():
            text = err.read_text()
            return all(f"finished {t}" in text for t in ids[:2]) and f"failed {ids[2]}" in text and "progress: 3/4" in text
        _wait(finished_trials)
        assert apply.poll() is None, "the run should still be going (one trial hangs)"
        lines = _lines(err)
        for tid in ids[:2]:
            assert len([x for x in lines if x.split(" ")[1:3] == ["finished", tid]]) == 1, lines
        assert any(f"started {ids[3]}" in x for x in lines), lines
        summary = [x for x in lines if " progress: " in x]
        assert re.search(r"progress: 3/4 finished \(2 done, 1 failed\), 1 running, elapsed \d+s, ETA \d+", summary[-1]), summary
        # A summary at most every HPT_PROGRESS_EVERY_S, from the timer while nothing happens.
        count = len(summary)
        _wait(lambda: len([x for x in _lines(err) if " progress: " in x]) > count, timeout=10)
        apply.send_signal(signal.SIGTERM)
        assert apply.wait(timeout=60) == 130
    finally:
        if apply.poll() is None:
            apply.kill()
    lines = _lines(err)
    assert lines and all(STAMP.match(x) for x in lines), lines   # every line timestamped
    text = err.read_text()
    assert "\r" not in text and "\x1b" not in text and "━" not in text   # no bar, no cursor moves
    assert "run finished: interrupted" in text and "Resume with: hpt apply" in text
    assert any(f"failed {ids[2]}: " in x for x in lines)
    assert out.read_text() == ""


def test_json_format_is_unchanged_when_redirected(tmp_path):
    ms = [make_manifest("/data/none", "bag-of-words", epochs=1, seed=i, experiment="e-abcdefabcdef") for i in range(2)]
    env = child_env(fake_env(tmp_path))
    plan_dir = write_plan(tmp_path / "plan", ms)
    proc = subprocess.run([hpt_exe(), "apply", str(plan_dir), "--results", str(tmp_path / "results"), "--format", "json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events].count("trial-finished") == 2
    assert proc.stderr == ""   # no progress lines beside the JSON


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_summary_cadence_and_eta(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("hpt.executor.events.time.monotonic", clock)
    out = io.StringIO()
    lines = PlainLines(out, every_s=30)
    lines.emit({"event": "run-started", "backend": "local", "results": "r", "total": 5, "to_run": 4, "already_done": 1,
                "parallel": 1})
    for i in range(4):
        lines.emit({"event": "trial-started", "trial_id": f"t{i}", "attempt": 1})
        clock.now += 10
        lines.emit({"event": "trial-finished", "trial_id": f"t{i}", "attempt": 1} if i != 2 else
                   {"event": "trial-failed", "trial_id": f"t{i}", "attempt": 1, "reason": "loss became NaN"})
    lines.emit({"event": "run-finished", "summary": "3/5 done, 1 failed", "results": "r"})
    text = out.getvalue().splitlines()
    assert "1 done already" in text[0] and "4 of 5 trial(s) to run" in text[0]
    assert "finished t0 in 10.0 s (1/4)" in text[2]
    assert any("failed t2: loss became NaN (3/4)" in x for x in text)
    summaries = [x for x in text if " progress: " in x]
    # 40 s of events with every_s=30: exactly one summary (at 30 s, after the third trial), with its ETA.
    assert len(summaries) == 1 and "progress: 3/4 finished (2 done, 1 failed), 0 running, elapsed 30s, ETA 10s" in summaries[0]
    assert text[-2].endswith("run finished: 3/5 done, 1 failed")


def test_data_import_prints_timestamped_steps_without_a_terminal(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("when,y,x\n" + "".join(f"2020-{m:02d}-0{d} 00:00,{m + d},{d}\n" for m in (1, 2, 3) for d in (1, 2)))
    result = runner.invoke(app, ["data", "import", str(csv), "--out", str(tmp_path / "ds"), "--timestamp", "when",
                                 "--target", "y"])
    assert result.exit_code == 0, result.output
    steps = result.stderr.splitlines()
    assert steps and all(STAMP.match(x) for x in steps), steps
    assert any("writing 6 rows" in x for x in steps) and sum("wrote " in x for x in steps) == 3, steps


def test_image_build_steps_are_timestamped_without_a_terminal(monkeypatch):
    monkeypatch.setattr(image_command.subprocess, "run", lambda argv, check=False: subprocess.CompletedProcess(argv, 0))
    result = runner.invoke(app, ["image", "build", "--offline"])
    assert result.exit_code == 0, result.output
    steps = result.stderr.splitlines()
    assert len(steps) == 2 and all(STAMP.match(x) for x in steps), steps
    assert "building hpt-trainer:latest" in steps[0] and "is ready" in steps[1]
