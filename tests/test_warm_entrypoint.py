"""A user's Python entry point under a default `hpt apply` (warm): called in the warm worker's forked trial
(whose imports, torch among them, were paid once), not in a second interpreter (`python -m hpt.trial`), with
the same row as a fresh process (`--no-warm`); and the trials a default apply starts fresh, said on stderr."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import textwrap
from pathlib import Path

from executor_support import hpt_exe

ENTRY = textwrap.dedent("""\
    import json, os, sys
    from hpt import trial

    def main(t):
        # torch is in sys.modules before this imports it only where the warm worker imported it
        seen = {"torch_preloaded": "torch" in sys.modules, "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd()}
        (t.output / "where.json").write_text(json.dumps(seen))
        for epoch in range(1, 3):
            trial.log(epoch, loss=1 / epoch)
        return {"mse": t.params["width"] / 100 + t.seed / 1000}
    """)


def _project(tmp_path: Path, **extra) -> Path:
    project = tmp_path / "project"
    (project / "model").mkdir(parents=True)
    (project / "model" / "__init__.py").write_text("")
    (project / "model" / "train.py").write_text(ENTRY)
    spec = {"trainer": {"entrypoint": "model.train:main", "name": "mine"}, "epochs": 2,
            "date-range": [["2010-09-01", "2010-12-01"]], "parameters": {"width": [4, 16]}, **extra}
    (project / "spec.json").write_text(json.dumps(spec))
    return project


def _run(*args, cwd=None):
    return subprocess.run([hpt_exe(), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_a_python_entrypoint_is_called_in_the_warm_child(tmp_path):
    project = _project(tmp_path)
    plan = tmp_path / "plan"
    assert _run("compile", project / "spec.json", "--out", plan).returncode == 0
    seen, tables = {}, {}
    for how in ("--warm", "--no-warm"):    # "--warm" here is the default: no flag
        results = tmp_path / how.strip("-")
        proc = _run("apply", plan, "--results", results, "--parallel", "1", *([how] if how == "--no-warm" else []))
        assert proc.returncode == 0, proc.stderr
        assert "start fresh" not in proc.stderr     # no trial of this plan is an exception
        table = list(csv.DictReader(io.StringIO((results / "results.csv").read_text())))
        tables[how] = {r["trial_id"]: r["mse"] for r in table}
        seen[how] = [json.loads((results / "models" / r["trial_id"] / "where.json").read_text()) for r in table]
    assert len(tables["--warm"]) == 2 and tables["--warm"] == tables["--no-warm"]   # the same rows' metrics
    assert all(s["torch_preloaded"] for s in seen["--warm"]), seen     # forked from the worker: torch already there
    assert not any(s["torch_preloaded"] for s in seen["--no-warm"]), seen
    assert all(Path(s["cwd"]).resolve() == (project).resolve() for s in seen["--warm"] + seen["--no-warm"])


def test_a_gpu_trial_starts_fresh_by_default_and_says_why(tmp_path):
    # No GPU on this machine: the trial falls back to the CPU, but asked for one, so it is never forked.
    project = _project(tmp_path, resources={"gpus": 1, "cpus": 1, "memory": "1Gi"})
    plan = tmp_path / "plan"
    assert _run("compile", project / "spec.json", "--out", plan).returncode == 0
    results = tmp_path / "results"
    proc = _run("apply", plan, "--results", results, "--parallel", "1")
    assert proc.returncode == 0, proc.stderr
    assert "2 trial(s) start fresh on the local backend, not warm: 2× a GPU trial (CUDA" in proc.stderr, proc.stderr
    table = list(csv.DictReader(io.StringIO((results / "results.csv").read_text())))
    seen = [json.loads((results / "models" / r["trial_id"] / "where.json").read_text()) for r in table]
    assert len(seen) == 2 and not any(s["torch_preloaded"] for s in seen), seen
    assert not (plan / ".hpt" / "local" / "warm-worker.log").exists()   # nothing was to fork: no worker started
