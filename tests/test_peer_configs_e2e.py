"""The peers' configs as written, end to end: a W&B sweep (nested parameters, `command` with ${args},
`early_terminate` hyperband, `method: bayes`) with its own script compiles, its dry run shows what
runs, and it runs locally; Katib's published examples compile into plans that run their container's
command with its ${trialParameters} rendered."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "data" / "katib"
HPT = [sys.executable, "-m", "hpt.cli"]

SCRIPT = textwrap.dedent("""\
    import argparse, math
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer.momentum", type=float, dest="momentum")
    p.add_argument("--optimizer.kind", dest="kind")
    p.add_argument("--epochs", type=int)
    a = p.parse_args()
    for epoch in range(1, a.epochs + 1):
        loss = (math.log10(a.lr) + 2) ** 2 + (0.1 if a.kind == "sgd" else 0) + 1 / epoch + a.momentum / 10
        print(f"epoch={epoch} val_loss={loss:.5f}")
""")
SWEEP = textwrap.dedent("""\
    program: train.py
    command:
      - ${env}
      - ${interpreter}
      - ${program}
      - ${args}
    method: bayes
    metric: {name: val_loss, goal: minimize}
    run_cap: 4
    early_terminate: {type: hyperband, min_iter: 1, eta: 2}
    parameters:
      lr: {distribution: log_uniform_values, min: 1e-4, max: 1e-1}
      optimizer:
        parameters:
          kind: {values: [adam, sgd]}
          momentum: {min: 0.0, max: 0.9}
      epochs: {value: 3}
""")


def hpt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(HPT + list(args), cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_wandb_sweep_with_its_script_compiles_shows_and_runs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)
    (src / "sweep.yaml").write_text(SWEEP)
    dry = hpt("compile", "src/sweep.yaml", "--out", "plan", "--explain", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "How hpt read a W&B sweep config" in dry.stdout and "optimizer.momentum" in dry.stdout
    assert "in-trial stopping: hyperband (min_iter 1, eta 2, strict False)" in dry.stdout   # W&B's early_terminate
    assert "not applied" not in dry.stderr
    manifests = [json.loads(p.read_text()) for p in sorted((tmp_path / "plan" / "trials").glob("*.json"))]
    assert len(manifests) == 4 and all("window" not in m for m in manifests)
    for m in manifests:   # W&B's ${args}: --name=value for every hyperparameter
        argv, p = m["trainer"]["argv"], m["params"]
        assert argv[:3] == ["/usr/bin/env", "python", "train.py"]
        assert f"--optimizer.kind={p['optimizer.kind']}" in argv and f"--lr={p['lr']}" in argv and "--epochs=3" in argv
        assert 1e-4 <= p["lr"] <= 0.1 and 0 <= p["optimizer.momentum"] <= 0.9
    run = hpt("apply", "plan", "--results", "results", "--parallel", "2", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = list((tmp_path / "results" / "rows").rglob("*.csv"))
    assert len(rows) == 4
    table = hpt("results", "results", "--format", "json", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "val_loss" in table.stdout


@pytest.mark.parametrize("name, method, trials", [("random", "random", 12), ("grid", "grid", 12), ("tpe", "tpe", 4),
                                                  ("hyperband", "random", 2), ("median-stop", "random", 15)])
def test_katibs_published_examples_compile(tmp_path, name, method, trials):
    result = hpt("compile", str(EXAMPLES / f"{name}.yaml"), "--out", "plan", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["method"] == method and summary["trials"] == trials   # tpe: round 1, of 12 in all
    manifest = json.loads(next((tmp_path / "plan" / "trials").glob("*.json")).read_text())
    assert manifest["image"] == "docker.io/kubeflowkatib/mxnet-mnist:v0.15.0" and "window" not in manifest
    argv, params = manifest["trainer"]["argv"], manifest["params"]
    assert argv[:2] == ["python3", "/opt/mxnet-mnist/mnist.py"]
    assert f"--lr={params['lr']}" in argv and not any("${" in word for word in argv)
    assert manifest["objective"]["metric"] == "Validation-accuracy"


JSON_SCRIPT = textwrap.dedent("""\
    import json, sys
    config = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
    inline = json.loads(sys.argv[sys.argv.index("--inline") + 1])
    assert config == inline and set(config["optimizer"]) == {"kind", "momentum"}, config
    print(f"val_loss={config['lr'] + config['optimizer']['momentum']}")
""")


def test_nested_parameters_are_nested_again_in_args_json_and_args_json_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(JSON_SCRIPT)
    sweep = SWEEP.replace("  - ${args}\n", "  - --config\n  - ${args_json_file}\n  - --inline\n  - ${args_json}\n")
    (src / "sweep.yaml").write_text(sweep.replace("method: bayes", "method: random").replace("run_cap: 4", "run_cap: 2"))
    assert hpt("compile", "src/sweep.yaml", "--out", "plan", cwd=tmp_path).returncode == 0
    manifest = json.loads(next((tmp_path / "plan" / "trials").glob("*.json")).read_text())
    inline = json.loads(manifest["trainer"]["argv"][-1])
    assert inline["optimizer"] == {"kind": manifest["params"]["optimizer.kind"],
                                   "momentum": manifest["params"]["optimizer.momentum"]}
    run = hpt("apply", "plan", "--results", "results", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(list((tmp_path / "results" / "rows").rglob("*.csv"))) == 2


LIST_SCRIPT = textwrap.dedent("""\
    import ast, json, sys
    flags = dict(word[2:].split("=", 1) for word in sys.argv[1:-1])      # ${args}: --name=str(value)
    config = json.load(open(sys.argv[-1]))                                # ${args_json_file}
    layers = ast.literal_eval(flags["layers"])
    assert layers == config["layers"] and ast.literal_eval(flags["head"]) == config["head"] == {"act": "relu"}
    print(f"epoch=1 val_loss={sum(layers) / 1000}")
""")
LIST_SWEEP = textwrap.dedent("""\
    program: train.py
    command: [python, "${program}", "${args}", "${args_json_file}"]
    method: grid
    metric: {name: val_loss, goal: minimize}
    parameters:
      layers: {values: [[64, 64], [128, 64, 32]]}
      head: {value: {act: relu}}
""")


def test_a_wandb_sweep_with_list_values_runs_and_groups_by_config(tmp_path):
    # W&B's values of any JSON type, end to end: the program reads the list from ${args} (W&B writes
    # str(value)) and from ${args_json_file}; results group by config with the value as canonical JSON
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(LIST_SCRIPT)
    (src / "sweep.yaml").write_text(LIST_SWEEP)
    dry = hpt("compile", "src/sweep.yaml", "--out", "plan", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "[128,64,32], [64,64]" in dry.stdout and '{"act":"relu"}' in dry.stdout   # the dry run's values
    run = hpt("apply", "plan", "--results", "results", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    table = hpt("results", "results", "--by", "config", "--format", "json", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    configs = json.loads(table.stdout)["by_config"]["configs"]
    assert [(c["params"]["param.layers"], c["per_range"]["(no range)"], c["n_trials"]) for c in configs] == \
        [("[64,64]", 0.128, 1), ("[128,64,32]", 0.224, 1)]
    assert {c["params"]["param.head"] for c in configs} == {'{"act":"relu"}'}
    assert json.loads(table.stdout)["by_config"]["best"] == configs[0]["config"]
    import csv   # the store's rows: the JSON value as one quoted cell, read back equal to the manifest's
    stored = [next(csv.DictReader(p.open())) for p in (tmp_path / "results" / "rows").rglob("*.csv")]
    assert sorted(json.loads(r["param.layers"]) for r in stored) == [[64, 64], [128, 64, 32]]
