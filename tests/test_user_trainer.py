"""User trainers end to end through the CLI: the spec's `trainer`, the trial protocol (docs/trial-protocol.md),
the trial id over the source, and every way a user program can fail leaving a failed row with a reason."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from executor_support import hpt_exe
from hpt.store import open_store

RANGES = [["2010-06-01", "2010-08-01"], ["2010-09-01", "2010-11-01"]]

# Not Python: reads its learning rate from the manifest with sed, reports epochs on stdout and the
# result in the metrics file; mse is smallest at lr = 0.05 and a deeper model pays 0.001 per layer.
SHELL_TRAINER = textwrap.dedent("""\
    #!/bin/sh
    set -eu
    lr=$(sed 's/.*"lr":\\([0-9.e-]*\\).*/\\1/' "$HPT_TRIAL_MANIFEST")
    depth=$(sed 's/.*"depth":\\([0-9]*\\).*/\\1/' "$HPT_TRIAL_MANIFEST")
    for epoch in 1 2 3; do
      echo "hpt:epoch {\\"epoch\\": $epoch, \\"loss\\": $(awk "BEGIN{print 1/$epoch}")}"
    done
    echo "$lr $depth" > "$HPT_TRIAL_OUTPUT/what-i-saw.txt"
    printf '{"mse": %s}\\n' "$(awk "BEGIN{print ($lr-0.05)^2 + 0.001*$depth}")" > "$HPT_TRIAL_METRICS"
    """)


def hpt(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def write_spec(folder: Path, trainer: dict, parameters: dict, **more) -> Path:
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"trainer": trainer, "date-range": RANGES, "parameters": parameters, **more}))
    return spec


def shell_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "train.sh").write_text(SHELL_TRAINER)
    os.chmod(project / "src" / "train.sh", 0o755)
    (project / "src" / "README.txt").write_text("my model\n")
    write_spec(project, {"command": ["./train.sh"], "source": "src"}, {"lr": [0.01, 0.05, 0.2], "depth": [1, 2]})
    return project


def trial_ids(plan: Path) -> list[str]:
    return json.loads((plan / "plan.json").read_text())["trials"]


def rows(results: Path) -> dict[str, dict[str, str]]:
    import csv
    import io

    return {r["trial_id"]: r for r in csv.DictReader(io.StringIO((results / "results.csv").read_text()))}


def test_a_shell_script_trainer_runs_and_is_analysed(tmp_path):
    project = shell_project(tmp_path)
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = hpt("compile", project / "spec.json", "--out", plan, "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    summary = json.loads(compiled.stdout)
    assert summary["architecture"] == "src" and summary["trials"] == 12
    manifest = json.loads((plan / "trials" / f"{trial_ids(plan)[0]}.json").read_text())
    assert manifest["trainer"]["command"] == ["./train.sh"] and manifest["image"].startswith("hpt-user-src:")
    assert set(manifest["params"]) == {"lr", "depth"} and isinstance(manifest["params"]["depth"], int)

    applied = hpt("apply", plan, "--results", results, "--parallel", "2")
    assert applied.returncode == 0, applied.stderr
    table = rows(results)
    assert len(table) == 12 and all(r["status"] == "done" for r in table.values())
    first = table[manifest["id"]]
    assert float(first["mse"]) == pytest.approx((manifest["params"]["lr"] - 0.05) ** 2 + 0.001 * manifest["params"]["depth"])
    store = open_store(str(results))
    saw = store.get(f"models/{manifest['id']}/what-i-saw.txt").decode().split()
    assert saw == [str(manifest["params"]["lr"]), str(manifest["params"]["depth"])]
    assert "hpt:epoch" in store.get(f"models/{manifest['id']}/trial.log").decode()
    from hpt.results.tensorboard import read_scalars   # hpt:epoch lines → TensorBoard scalars, as TensorBoard reads them
    assert read_scalars(results / "tensorboard" / manifest["id"]) == {"loss": [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3, abs=1e-5))]}

    by_config = hpt("results", results, "--by", "config", "--format", "json")
    assert by_config.returncode == 0, by_config.stderr
    best = json.loads(by_config.stdout)["by_config"]["configs"][0]
    assert best["params"] == {"param.depth": 1, "param.lr": 0.05} and best["best_everywhere"]
    trends = hpt("results", results, "--trends")
    assert trends.returncode == 0 and "lr" in trends.stdout, trends.stderr
    report = hpt("report", results, "--out", tmp_path / "report.html")
    assert report.returncode == 0 and (tmp_path / "report.html").stat().st_size > 1000, report.stderr


def test_editing_one_source_file_changes_every_trial_id_and_nothing_else_does(tmp_path):
    project = shell_project(tmp_path)
    assert hpt("compile", project / "spec.json", "--out", tmp_path / "a").returncode == 0
    before = trial_ids(tmp_path / "a")
    (project / "src" / "__pycache__").mkdir()      # what running Python code leaves behind is not the source
    (project / "src" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert hpt("compile", project / "spec.json", "--out", tmp_path / "b").returncode == 0
    assert trial_ids(tmp_path / "b") == before
    moved = tmp_path / "elsewhere"                  # the same code in another checkout is the same trial
    project.rename(moved)
    assert hpt("compile", moved / "spec.json", "--out", tmp_path / "c").returncode == 0
    assert trial_ids(tmp_path / "c") == before
    (moved / "src" / "README.txt").write_text("my model, edited\n")
    assert hpt("compile", moved / "spec.json", "--out", tmp_path / "d").returncode == 0
    after = trial_ids(tmp_path / "d")
    assert len(after) == len(before) and not set(after) & set(before)
    os.chmod(moved / "src" / "README.txt", 0o755)   # the executable bit is part of the source
    assert hpt("compile", moved / "spec.json", "--out", tmp_path / "e").returncode == 0
    assert not set(trial_ids(tmp_path / "e")) & set(after)


def test_source_changed_after_compile_fails_the_trial_instead_of_running_other_code(tmp_path):
    project = shell_project(tmp_path)
    plan, results = tmp_path / "plan", tmp_path / "results"
    assert hpt("compile", project / "spec.json", "--out", plan).returncode == 0
    (project / "src" / "README.txt").write_text("edited after compile\n")
    tid = trial_ids(plan)[0]
    proc = subprocess.run([sys.executable, "-m", "hpt.trainer",
                           plan / "trials" / f"{tid}.json", "--results", results], capture_output=True, text=True)
    assert proc.returncode == 1
    row = rows_from_store(results)[tid]
    assert row["status"] == "failed" and "recompile the spec" in row["reason"]


def test_apply_after_the_source_changed_says_recompile_not_re_apply(tmp_path):
    """Re-applying the same plan fails the same way: hpt apply's last words say to recompile."""
    project = shell_project(tmp_path)
    plan, results = tmp_path / "plan", tmp_path / "results"
    assert hpt("compile", project / "spec.json", "--out", plan).returncode == 0
    (project / "src" / "README.txt").write_text("edited after compile\n")
    proc = hpt("apply", plan, "--results", results)
    assert proc.returncode == 1, proc.stderr[-2000:]
    said = proc.stdout + proc.stderr
    assert "would fail the same way: recompile the spec (`hpt compile`)" in said, said[-2000:]
    assert "Re-apply to retry" not in said


def test_a_plan_and_store_written_inside_the_source_are_not_the_source(tmp_path):
    # W&B's usual layout: the spec's folder is the source (no "source" key), and compile and apply run in it.
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.sh").write_text(SHELL_TRAINER)
    os.chmod(repo / "train.sh", 0o755)
    write_spec(repo, {"command": ["./train.sh"]}, {"lr": [0.01, 0.05], "depth": [1]})
    compiled = hpt("compile", "spec.json", "--out", "plan", cwd=repo)
    assert compiled.returncode == 0, compiled.stderr
    ids = trial_ids(repo / "plan")
    applied = hpt("apply", "plan", "--results", "hpt-results", cwd=repo)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert {tid: r["status"] for tid, r in rows(repo / "hpt-results").items()} == dict.fromkeys(ids, "done")
    # Compiled again beside its plan and store (names no default knows: markers, not names), the ids stay.
    (repo / "plan").rename(repo / "my-plan")
    (repo / "hpt-results").rename(repo / "runs-2026")
    assert hpt("compile", "spec.json", "--out", "again", cwd=repo).returncode == 0
    assert trial_ids(repo / "again") == ids
    # A folder that merely looks like one is source: a plan.json of another kind, a logs/ folder of the user's.
    (repo / "configs").mkdir()
    (repo / "configs" / "plan.json").write_text('{"kind": "MyPlan"}')
    assert hpt("compile", "spec.json", "--out", "third", cwd=repo).returncode == 0
    assert not set(trial_ids(repo / "third")) & set(ids)
    # Editing a real source file after compile still fails the trial with the recompile message.
    (repo / "configs" / "plan.json").unlink()
    (repo / "train.sh").write_text(SHELL_TRAINER + "# edited\n")
    rerun = hpt("apply", "again", "--results", "fresh", cwd=repo)
    assert rerun.returncode != 0
    assert all(r["status"] == "failed" and "recompile the spec" in r["reason"] for r in rows(repo / "fresh").values())
    assert hpt("compile", "spec.json", "--out", "edited", cwd=repo).returncode == 0
    assert not set(trial_ids(repo / "edited")) & set(ids)


def test_every_store_entry_hpt_writes_is_known_to_the_source_hash():
    # A store inside the trainer's source is told from source by its entries: a new top-level store folder
    # missing from STORE_ENTRIES would make a store with it hash as source (every trial id would change).
    from hpt.executor import loop
    from hpt.schemas import stopping, trainer
    from hpt.store import base, claims, index, ownership
    written = {base.ROWS, base.RESULTS_CSV, base.MODELS, base.TENSORBOARD, base.LOGS, base.ROUNDS, index.INDEX_ROWS,
               ownership.OWNERS, claims.CLAIMS, loop.ROWS_FAILED, loop.RUNS, stopping.STOPS, stopping.CURVES,
               stopping.VERDICTS}
    assert {name.split("/")[0] for name in written} <= trainer.STORE_ENTRIES


# What a user trial's wrapper must not load: the compiler and the analysis (hpt/__init__.py once imported them
# through hpt.api), the package-metadata machinery (hpt.schemas.version), the built-in trainer's stack.
NOT_ON_THE_USER_PATH = ("hpt.api", "hpt.compiler", "hpt.results", "hpt.data_import", "importlib.metadata", "pandas",
                        "numpy", "torch", "tensorboard")


def test_the_user_trial_path_imports_nothing_it_does_not_use(tmp_path):
    """`hpt-trial` around a user's program (and `import hpt.trial` in that program) pays only for what it runs:
    each heavy import here cost every trial tens of milliseconds (bench/bench_user_trial.py)."""
    project = shell_project(tmp_path)
    plan, results = tmp_path / "plan", tmp_path / "results"
    assert hpt("compile", project / "spec.json", "--out", plan).returncode == 0
    tid = trial_ids(plan)[0]
    loaded = f"print(sorted(m for m in {NOT_ON_THE_USER_PATH!r} if m in sys.modules))"
    probe = (f"import sys\nfrom hpt.trainer.__main__ import main\ntry:\n    main(sys.argv[1:])\n"
             f"except SystemExit as e:\n    {loaded[:-1]}, e.code)\n")
    proc = subprocess.run([sys.executable, "-c", probe, plan / "trials" / f"{tid}.json", "--results", results, "-q"],
                          capture_output=True, text=True)
    assert proc.stdout.split("\n")[-2] == "[] 0", proc.stdout + proc.stderr
    assert rows_from_store(results)[tid]["status"] == "done"
    user_side = subprocess.run([sys.executable, "-c", f"import sys\nfrom hpt import trial\n{loaded}"],
                               capture_output=True, text=True)
    assert user_side.stdout == "[]\n", user_side.stdout + user_side.stderr
    # the API is still one attribute away, loaded on first use
    api = subprocess.run([sys.executable, "-c", "import hpt, sys\nprint('hpt.api' in sys.modules, callable(hpt.compile))"],
                         capture_output=True, text=True)
    assert api.stdout == "False True\n", api.stdout + api.stderr
    # `from hpt import api` (for read_results, say) loads the compiler only when a function needs it;
    # hpt.api.import_dataset is still there, loaded on first use
    on_demand = subprocess.run([sys.executable, "-c", "import sys\nfrom hpt import api\n"
                                f"{loaded[:-1]}, api.import_dataset.__module__)"], capture_output=True, text=True)
    assert on_demand.stdout == "['hpt.api'] hpt.data_import\n", on_demand.stdout + on_demand.stderr


def rows_from_store(results: Path) -> dict[str, dict[str, str]]:
    from hpt.schemas.row import parse_row_csv

    store = open_store(str(results))
    return {Path(k).stem: parse_row_csv(store.get(k).decode()) for k in store.list("rows/")}


FAILING = textwrap.dedent("""\
    import math, os, sys
    from hpt import trial
    case = trial.current().params["case"]
    if case == 0:
        print("loading data"); sys.exit("boom: no such column 'pm2.5'")
    if case == 1:
        print("trained, forgot to report")
    if case == 2:
        trial.result(mse=math.nan)
    if case == 3:
        print("hpt:result mse=0.3")
    if case == 4:
        open(os.environ["HPT_TRIAL_METRICS"], "w").write("{not json")
    if case == 5:
        print("hpt:epoch {\\"loss\\": 1}")
        trial.result(mse=1.0)
    if case == 6:
        trial.result(mae=1.0)
    if case == 7:
        os.kill(os.getpid(), 9)
    """)

REASONS = {
    0: "exited with code 1: boom: no such column 'pm2.5'",
    1: "exited 0 without reporting a result",
    2: "metrics.json: mse is nan",
    3: "output line 1 (hpt:result) is not valid JSON",
    4: "metrics.json is not valid JSON",
    5: "needs an integer \"epoch\"",
    6: "result has no 'mse' (the objective); it reported mae",
    7: "was killed by signal 9",
}


def test_every_way_a_user_program_fails_leaves_a_failed_row_with_a_one_line_reason(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "failing.py").write_text(FAILING)
    spec = write_spec(project, {"command": ["python", "failing.py"]}, {"case": list(REASONS)},
                      **{"date-range": RANGES[:1]})
    plan, results = tmp_path / "plan", tmp_path / "results"
    assert hpt("compile", spec, "--out", plan).returncode == 0
    applied = hpt("apply", plan, "--results", results, "--parallel", "2")
    assert applied.returncode == 1, applied.stderr   # some trials failed; their rows say why
    by_case = {int(r["param.case"]): r for r in rows(results).values()}
    assert sorted(by_case) == sorted(REASONS)
    for case, reason in REASONS.items():
        assert by_case[case]["status"] == "failed" and reason in by_case[case]["reason"], (case, by_case[case]["reason"])
        assert "\n" not in by_case[case]["reason"]


ENTRYPOINT = textwrap.dedent("""\
    import time
    from hpt import trial

    def main(t):
        assert t.epochs == 4 and t.data_uri and t.train[0] < t.train[1] <= t.validation[0]
        for epoch in range(1, t.epochs + 1):
            time.sleep(float(t.params["sleep"]))
            trial.log(epoch, loss=1 / epoch)
        (t.output / "weights.txt").write_text(repr(t.params))
        return {"mse": t.params["width"] / 100}
    """)


def entrypoint_project(tmp_path: Path, sleep: float = 0.0) -> Path:
    project = tmp_path / "project"
    (project / "model").mkdir(parents=True)
    (project / "model" / "__init__.py").write_text("")
    (project / "model" / "train.py").write_text(ENTRYPOINT)
    (project / "catalog.json").write_text(json.dumps({"parameters": [
        {"name": "width", "type": "int", "default": 8, "min": 1, "max": 64, "auto": [4, 16]},
        {"name": "sleep", "type": "float", "default": sleep, "min": 0, "max": 10}]}))
    spec = {"trainer": {"entrypoint": "model.train:main", "catalog": "catalog.json", "name": "mine"},
            "date-range": RANGES, "epochs": 4}
    (project / "spec.json").write_text(json.dumps(spec))
    return project


def test_entrypoint_with_a_catalog_auto_mode_defaults_and_range_checks(tmp_path):
    project = entrypoint_project(tmp_path)
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = hpt("compile", project / "spec.json", "--out", plan, "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    assert json.loads(compiled.stdout)["parameters"] == {"width": [4, 16]}   # auto: the catalog's auto values
    manifests = [json.loads((plan / "trials" / f"{t}.json").read_text()) for t in trial_ids(plan)]
    assert all(m["params"]["sleep"] == 0.0 and m["architecture"] == "mine" for m in manifests)  # defaults resolved
    assert hpt("apply", plan, "--results", results).returncode == 0
    table = rows(results)
    assert sorted(float(r["mse"]) for r in table.values()) == [0.04, 0.04, 0.16, 0.16]
    tid = manifests[0]["id"]
    assert open_store(str(results)).get(f"models/{tid}/weights.txt").decode().startswith("{")

    spec = json.loads((project / "spec.json").read_text())
    bad = {**spec, "parameters": {"width": [4, 100]}}
    (project / "bad.json").write_text(json.dumps(bad))
    proc = hpt("compile", project / "bad.json", "--out", tmp_path / "bad")
    assert proc.returncode == 2 and "parameters.width[1]" in proc.stderr and "outside width's range" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("change, where, words", [
    ({"trainer": {"entrypoint": "model.nothere:main", "catalog": "catalog.json"}}, "trainer.entrypoint", "is not in"),
    ({"trainer": {"entrypoint": "model.train:main", "catalog": "missing.json"}}, "trainer.catalog", "cannot read"),
    ({"trainer": {"entrypoint": "model.train:main", "source": "nope"}, "parameters": {"a": [1]}}, "trainer.source", "no such folder"),
    ({"architecture": "lstm"}, "trainer", "not both"),
    ({"trainer": {"entrypoint": "model.train:main"}}, "trainer", "needs its hyperparameters"),
    # an image with no hpt: only what the program prints reaches apply
    ({"trainer": {"entrypoint": "model.train:main", "catalog": "catalog.json", "collect": "log"}}, "trainer.collect",
     "an entry point needs hpt-trial inside"),
    ({"trainer": {"command": ["python3", "x.py"], "collect": "log", "metrics_from": "tensorboard"}, "parameters": {"a": [1]}},
     "trainer.collect", "out of its reach"),
])
def test_bad_trainer_sections_are_exit_2_naming_the_key(tmp_path, change, where, words):
    project = entrypoint_project(tmp_path)
    spec = {**json.loads((project / "spec.json").read_text()), **change}
    (project / "spec.json").write_text(json.dumps(spec))
    proc = hpt("compile", project / "spec.json", "--out", tmp_path / "plan")
    assert proc.returncode == 2 and where in proc.stderr and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_mutable_image_tag_warns_at_compile(tmp_path):
    project = entrypoint_project(tmp_path)
    spec = json.loads((project / "spec.json").read_text())
    spec["trainer"]["image"] = "registry.example/forecast:latest"
    (project / "spec.json").write_text(json.dumps(spec))
    proc = hpt("compile", project / "spec.json", "--out", tmp_path / "plan", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert any("mutable tag" in w for w in json.loads(proc.stdout)["warnings"])


def test_sigkill_of_apply_mid_run_then_reapply_gives_one_row_per_trial(tmp_path):
    project = entrypoint_project(tmp_path, sleep=0.4)
    plan, results = tmp_path / "plan", tmp_path / "results"
    assert hpt("compile", project / "spec.json", "--out", plan).returncode == 0
    ids = trial_ids(plan)
    apply = subprocess.Popen([hpt_exe(), "apply", str(plan), "--results", str(results), "--parallel", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = plan / ".hpt" / "local"

    def second_trial_running() -> bool:
        done = {Path(k).stem for k in open_store(str(results)).list("rows/")} if results.exists() else set()
        return bool(done) and any(p.name.split(".")[0] not in done for p in state.rglob("*.pid.json"))

    deadline = time.monotonic() + 120
    while not second_trial_running():
        assert time.monotonic() < deadline and apply.poll() is None
        time.sleep(0.05)
    apply.send_signal(signal.SIGKILL)
    apply.wait()
    proc = hpt("apply", plan, "--results", results, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(open_store(str(results)).list("rows/")) == sorted(f"rows/{t}.csv" for t in ids)
    assert all(r["status"] == "done" for r in rows(results).values())
    logs = "".join(open_store(str(results)).get(f"logs/{t}.log").decode() for t in ids)
    assert logs.count("running ") == len(ids)   # each trial's program started once: nothing trained twice


def test_categorical_and_boolean_hyperparameters_of_a_user_trainer(tmp_path):
    """Declared in the trainer's catalog (choices, bool) or, without one, implied by the spec's values (all
    strings: a categorical of those; all booleans: a bool): manifests carry them typed; a wrong value is exit 2
    naming it, and with a catalog a name it does not declare is a typo (exit 2, did you mean)."""
    project = entrypoint_project(tmp_path)
    (project / "catalog.json").write_text(json.dumps({"parameters": [
        {"name": "width", "type": "int", "default": 8, "min": 1, "max": 64},
        {"name": "sleep", "type": "float", "default": 0.0, "min": 0, "max": 10},
        {"name": "activation", "type": "categorical", "choices": ["relu", "tanh", "gelu"], "default": "relu"},
        {"name": "layer_norm", "type": "bool", "default": False, "auto": [False, True]},
        {"name": "shuffle", "type": "bool", "default": True}]}))
    spec = json.loads((project / "spec.json").read_text())
    spec["parameters"] = {"activation": ["tanh", "gelu"], "layer_norm": True,
                          "shuffle": {"distribution": "categorical", "values": [True, False]}}
    (project / "spec.json").write_text(json.dumps(spec))
    plan = tmp_path / "plan"
    compiled = hpt("compile", project / "spec.json", "--out", plan, "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    params = [json.loads((plan / "trials" / f"{t}.json").read_text())["params"] for t in trial_ids(plan)]
    assert len(params) == 2 * 2 * len(RANGES)
    assert {(p["activation"], p["shuffle"]) for p in params} == {(a, s) for a in ("tanh", "gelu") for s in (True, False)}
    assert all(p["layer_norm"] is True and p["width"] == 8 for p in params)

    for parameters, where, words in [
        ({"activation": ["swish"]}, "parameters.activation[0]", "not one of activation's choices: relu, tanh, gelu"),
        ({"layer_norm": [1]}, "parameters.layer_norm[0]", "layer_norm is a bool"),
        ({"layer_norms": [True]}, "parameters.layer_norms", "did you mean 'layer_norm'?"),
    ]:
        (project / "bad.json").write_text(json.dumps({**spec, "parameters": parameters}))
        proc = hpt("compile", project / "bad.json", "--out", tmp_path / "bad")
        assert proc.returncode == 2 and where in proc.stderr and words in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    without = {k: v for k, v in spec["trainer"].items() if k != "catalog"}
    (project / "bad.json").write_text(json.dumps({**spec, "trainer": without, "parameters": {"kernel": ["rbf", 2]}}))
    proc = hpt("compile", project / "bad.json", "--out", tmp_path / "bad")
    assert proc.returncode == 2 and "parameters.kernel" in proc.stderr and "mixes numbers, strings and booleans" in proc.stderr
    (project / "bad.json").write_text(json.dumps({**spec, "trainer": without, "parameters": {"kernel": ["rbf", "linear"]}}))
    compiled = hpt("compile", project / "bad.json", "--out", tmp_path / "implied", "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    kinds = {json.loads(p.read_text())["params"]["kernel"] for p in (tmp_path / "implied" / "trials").iterdir()}
    assert kinds == {"rbf", "linear"}
    (project / "catalog.json").write_text(json.dumps({"parameters": [
        {"name": "activation", "type": "categorical", "default": "relu"}]}))
    proc = hpt("compile", project / "spec.json", "--out", tmp_path / "bad")
    assert proc.returncode == 2 and "choices are what a categorical needs" in proc.stderr, proc.stderr


def test_image_build_for_a_spec_without_its_own_trainer_is_exit_2(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"architecture": "lstm"}))
    proc = hpt("image", "build", "--spec", spec)
    assert proc.returncode == 2 and "not a trainer of its own" in proc.stderr and "Traceback" not in proc.stderr
    project = entrypoint_project(tmp_path)
    proc = hpt("image", "build", "--spec", project / "spec.json", "--tag", "mine:1")
    assert proc.returncode == 2 and "--tag" in proc.stderr


def test_the_k8s_dry_run_shows_the_user_trainer_image(tmp_path):
    project = entrypoint_project(tmp_path)
    plan = tmp_path / "plan"
    assert hpt("compile", project / "spec.json", "--out", plan).returncode == 0
    image = json.loads((plan / "trials" / f"{trial_ids(plan)[0]}.json").read_text())["image"]
    assert image.startswith("hpt-user-mine:")
    dry = hpt("apply", plan, "--backend", "k8s", "--dry-run", "--results", "gs://bucket/mine")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count(f"image: {image}") == len(trial_ids(plan))


def test_integers_a_user_trainer_reports_stay_integers(tmp_path, monkeypatch):
    """epochs 3 and n_params 833 reach the row as 3 and 833, not 3.0: from hpt.trial.result, a JSON-lines
    report and a stdout name=value line alike."""
    from hpt import trial
    from hpt.schemas import protocol
    from hpt.trainer.collectors.jsonl import JsonLines
    from hpt.trainer.collectors.stdout import StdoutPairs

    monkeypatch.setenv(protocol.ENV_METRICS, str(tmp_path / "metrics.json"))
    trial.result(mse=0.25, epochs=3, n_params=833, best_epoch=True)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == {"mse": 0.25, "epochs": 3, "n_params": 833, "best_epoch": 1.0}
    assert isinstance(written["epochs"], int) and isinstance(written["mse"], float)
    (report,) = StdoutPairs({"format": "stdout"}).line("epoch=2 n_params=833 mse=0.5")
    assert report.values == {"n_params": 833, "mse": 0.5} and isinstance(report.values["n_params"], int)
    (report,) = JsonLines({"format": "jsonl"}).line('{"epoch": 2, "n_params": 833, "mse": 0.5}')
    assert isinstance(report.values["n_params"], int)
