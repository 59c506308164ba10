"""A user's script as it is: hyperparameters through W&B's macros and Katib's placeholders (rendered as they do),
metrics collected the way the script prints or writes them, trials without dated windows."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from executor_support import hpt_exe
from hpt.compiler.macros import check_command, command_use, render_command
from hpt.schemas.errors import UserError
from hpt.schemas.protocol import EpochReport
from hpt.store import open_store
from hpt.trainer.collectors import final_metrics
from hpt.trainer.collectors.jsonl import JsonLines
from hpt.trainer.collectors.stdout import KATIB_FILTER, StdoutPairs


def hpt(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


# W&B's rendering, from its agent (create_sweep_command_args: f"{param}={value}", bools omitted or bare in
# args_no_boolean_flags, json.dumps for args_json) and its docs' examples (--param1=value1, param1=value1).
WANDB = [
    ({"batch_size": 32}, "${args}", ["--batch_size=32"]),
    ({"lr": 0.001}, "${args}", ["--lr=0.001"]),
    ({"lr": 1e-05}, "${args}", ["--lr=1e-05"]),
    ({"lr": 3.0}, "${args}", ["--lr=3.0"]),
    ({"big": 1e16}, "${args}", ["--big=1e+16"]),
    ({"norm": True}, "${args}", ["--norm=True"]),
    ({"norm": False}, "${args}", ["--norm=False"]),
    ({"act": "relu"}, "${args}", ["--act=relu"]),
    ({"dims": [64, 32]}, "${args}", ["--dims=[64, 32]"]),
    ({"lr": 0.001, "act": "tanh"}, "${args_no_hyphens}", ["lr=0.001", "act=tanh"]),
    ({"norm": True, "lr": 0.1}, "${args_no_boolean_flags}", ["--norm", "--lr=0.1"]),
    ({"norm": False, "lr": 0.1}, "${args_no_boolean_flags}", ["--lr=0.1"]),
    ({"norm": True, "lr": 0.1, "act": "relu"}, "${args_json}", ['{"norm": true, "lr": 0.1, "act": "relu"}']),
    ({"lr": 0.1}, "${args_json_file}", ["${args_json_file}"]),
    ({}, "${env}", ["/usr/bin/env"]),
    ({}, "${interpreter}", ["python"]),
]


@pytest.mark.parametrize("params, macro, words", WANDB)
def test_wandb_macros_render_like_wandb(params, macro, words):
    assert render_command(["x", macro, "y"], params) == ["x", *words, "y"]


def test_wandb_default_command_and_program():
    command = ["${env}", "${interpreter}", "${program}", "${args}"]
    assert render_command(command, {"lr": 0.01, "layers": 2}, program="train.py") == \
        ["/usr/bin/env", "python", "train.py", "--lr=0.01", "--layers=2"]
    with pytest.raises(UserError, match="needs the trainer's"):
        check_command(command, ["lr"])


@pytest.mark.parametrize("word, params, rendered", [
    ("--lr=${trialParameters.lr}", {"lr": 0.01}, "--lr=0.01"),
    ("${trialParameters.lr}", {"lr": 1e-05}, "1e-05"),
    ("--layers=${trialParameters.n}", {"n": 3}, "--layers=3"),
    ("--opt=${trialParameters.opt}", {"opt": "adam"}, "--opt=adam"),
    ("--norm=${trialParameters.norm}", {"norm": True}, "--norm=true"),
    ("${trialParameters.a}x${trialParameters.b}", {"a": 2, "b": 3}, "2x3"),
])
def test_katib_trial_parameters_are_substituted_inside_words(word, params, rendered):
    assert render_command(["python", word], params) == ["python", rendered]
    assert command_use(["python", word]).placeholders == tuple(dict.fromkeys(p for p in params if p in word))


def test_unknown_macros_and_parameters_are_errors_naming_the_word():
    with pytest.raises(UserError) as err:
        check_command(["python", "t.py", "${argz}"], ["lr"])
    assert err.value.where == "trainer.command[2]" and "unknown macro ${argz}" in err.value.message
    with pytest.raises(UserError) as err:
        check_command(["python", "--lr=${trialParameters.lrate}"], ["lr", "layers"])
    assert err.value.where == "trainer.command[1]" and "no hyperparameter 'lrate'" in err.value.message


def test_the_stdout_collector_reads_katibs_format():
    collect = StdoutPairs({"format": "stdout"})
    assert collect.line("starting, nothing to see\n") == []
    assert collect.line("epoch=2 loss=0.41 val-acc=.93 lr=1e-3 note=abc\n") == \
        [EpochReport(2, {"loss": 0.41, "val-acc": 0.93, "lr": 0.001})]
    assert collect.line("loss = -1.5E+2\n") == [EpochReport(2, {"loss": -150.0})]   # no epoch: the ordinal
    custom = StdoutPairs({"format": "stdout", "regex": r"(\w+): ([\d.]+)"})
    assert custom.line("smape: 12.5 wape: 0.25\n") == [EpochReport(1, {"smape": 12.5, "wape": 0.25})]
    assert KATIB_FILTER == r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"


def test_json_lines_and_the_final_value_rules():
    collect = JsonLines({"format": "json-lines"})
    reports = [r for line in ['{"epoch": 1, "wape": 0.5, "acc": 0.6}', "text", '{"epoch": 2, "wape": 0.3, "acc": 0.5}',
                              '{"epoch": 3, "wape": 0.4, "acc": 0.7, "tag": "x"}'] for r in collect.line(line)]
    assert [r.epoch for r in reports] == [1, 2, 3]
    objective = {"metric": "wape", "goal": "minimize"}
    assert final_metrics(reports, {"final": "last"}, objective) == {"wape": 0.4, "acc": 0.7}
    assert final_metrics(reports, {"final": "best", "goals": {"acc": "maximize"}}, objective) == {"wape": 0.3, "acc": 0.7}
    assert final_metrics(reports, {"final": "best-epoch"}, objective) == {"wape": 0.3, "acc": 0.5}


SCRIPT = textwrap.dedent("""\
    import argparse, json, os
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--activation", choices=["relu", "tanh"], default="relu")
    parser.add_argument("--layer_norm", action="store_true")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    for epoch in range(1, 4):
        wape = abs(args.lr - 0.01) + (0.0 if args.layer_norm else 0.1) + (0.05 if args.activation == "tanh" else 0) + 0.01 * (3 - epoch)
        print(f"epoch {epoch}: epoch={epoch} train_loss={1 / epoch:.3f} wape={wape:.4f} extra_gauge=7")
        with open(os.path.join(args.out, "log.jsonl"), "a") as log:
            log.write(json.dumps({"step": epoch, "coverage": 0.8 + 0.01 * epoch}) + "\\n")
    """)


def script_project(tmp_path: Path, command: list[str], metrics_from, **spec) -> Path:  # noqa: ANN001
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "train.py").write_text(SCRIPT)
    doc = {"trainer": {"command": command, "source": "src", "windows": False, "metrics_from": metrics_from},
           "parameters": {"lr": [0.01, 0.1], "activation": ["relu", "tanh"], "layer_norm": [True, False]},
           "metrics": [{"name": "wape", "goal": "minimize"}, "train_loss"], "epochs": 3, **spec}
    (tmp_path / "spec.json").write_text(json.dumps(doc))
    return tmp_path / "spec.json"


def test_an_unchanged_argparse_script_runs_with_wandb_args_and_stdout_metrics_without_windows(tmp_path):
    spec = script_project(tmp_path, ["python", "train.py", "--out=${HPT_TRIAL_OUTPUT}", "${args_no_boolean_flags}"],
                          "stdout")
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = hpt("compile", spec, "--out", plan, "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    summary = json.loads(compiled.stdout)
    assert summary["trials"] == 8 and summary["windows"] == []          # one trial per config, no windows
    manifests = [json.loads(p.read_text()) for p in sorted((plan / "trials").iterdir())]
    assert all("window" not in m for m in manifests)
    argvs = {json.dumps(m["params"], sort_keys=True): m["trainer"]["argv"] for m in manifests}
    assert argvs['{"activation": "tanh", "layer_norm": true, "lr": 0.01}'] == \
        ["python", "train.py", "--out=${HPT_TRIAL_OUTPUT}", "--activation=tanh", "--layer_norm", "--lr=0.01"]
    assert argvs['{"activation": "relu", "layer_norm": false, "lr": 0.1}'][3:] == ["--activation=relu", "--lr=0.1"]
    dry = hpt("apply", plan, "--dry-run", "--results", results)
    assert dry.returncode == 0 and "runs: python train.py '--out=${HPT_TRIAL_OUTPUT}' --activation=tanh --layer_norm" \
        in dry.stdout, dry.stdout
    applied = hpt("apply", plan, "--results", results)
    assert applied.returncode == 0, applied.stderr
    table = json.loads(hpt("results", results, "--format", "json").stdout)
    assert table["objective"] == {"metric": "wape", "goal": "minimize"}
    best = table["rows"][0]
    assert best["param.lr"] == 0.01 and best["param.layer_norm"] in (True, "true") and best["param.activation"] == "relu"
    assert best["wape"] == pytest.approx(0.0) and best["train_loss"] == pytest.approx(0.333)   # final: the last report
    store = open_store(str(results))
    row = store.get(f"rows/{best['trial_id']}.csv").decode()
    assert "extra_gauge" in row                     # undeclared numbers are kept (extra_metrics)
    assert store.list(f"tensorboard/{best['trial_id']}/")   # per-step values became curves
    by_config = " ".join(hpt("results", results, "--by", "config").stdout.split())
    assert "over their repeats (no date ranges)" in by_config and "No date ranges (the trainer splits" in by_config
    assert "Only one date range" not in by_config and "(ranges × repeats)" not in by_config, by_config
    log = store.get(f"logs/{best['trial_id']}.log").decode()
    reports = [json.loads(line.split("hpt:epoch ", 1)[1]) for line in log.splitlines() if "hpt:epoch {" in line]
    # the watcher's seam (integers may stay integers: compared as numbers)
    assert {"epoch": 3, "train_loss": 0.333, "wape": 0.0, "extra_gauge": 7.0} in reports, reports


def test_json_lines_from_a_file_and_katib_placeholders(tmp_path):
    command = ["python", "train.py", "--out=${HPT_TRIAL_OUTPUT}", "--lr=${trialParameters.lr}",
               "--activation=${trialParameters.activation}"]
    spec = script_project(tmp_path, command, {"format": "json-lines", "file": "log.jsonl", "final": "best"},
                          metrics=[{"name": "coverage", "goal": "maximize"}])
    doc = json.loads(spec.read_text())
    doc["parameters"].pop("layer_norm")
    spec.write_text(json.dumps(doc))
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = hpt("compile", spec, "--out", plan)
    assert compiled.returncode == 0, compiled.stderr
    assert hpt("apply", plan, "--results", results).returncode == 0
    table = json.loads(hpt("results", results, "--format", "json").stdout)
    assert [r["coverage"] for r in table["rows"]] == [pytest.approx(0.83)] * 4


def test_a_command_that_passes_no_hyperparameter_is_a_warning(tmp_path):
    spec = script_project(tmp_path, ["python", "train.py"], "stdout")
    compiled = hpt("compile", spec, "--out", tmp_path / "plan")
    assert compiled.returncode == 0 and "passes no hyperparameter to the program" in compiled.stderr, compiled.stderr
    spec = script_project(tmp_path, ["python", "train.py", "--lr=${trialParameters.lr}"], "stdout")
    compiled = hpt("compile", spec, "--out", tmp_path / "plan2")
    assert "parameters.activation: used nowhere in trainer.command" in compiled.stderr
    assert "parameters.lr" not in compiled.stderr


def test_a_trainer_without_windows_refuses_date_settings(tmp_path):
    spec = script_project(tmp_path, ["python", "train.py", "${args}"], "stdout",
                          **{"date-range": [["2010-01-01", "2010-03-01"]]})
    out = hpt("compile", spec, "--out", tmp_path / "plan")
    assert out.returncode == 2 and "date-range" in out.stderr and "no dated windows" in out.stderr


@pytest.mark.parametrize("where", ["local", "gs"])
def test_trial_frames_reads_the_two_windows_and_only_their_months(tmp_path, small_dataset, monkeypatch, request, where):
    """A local dataset folder, and the same on gs:// (fake-gcs-server, through the google-cloud-storage client)."""
    import shutil

    from trial_factory import make_manifest

    from hpt import trial

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    months = sorted(p.name for p in data.iterdir() if p.name.startswith("month="))
    assert "month=2010-08" in months
    for part in (data / "month=2010-08").iterdir():   # outside the windows: reading it would fail
        part.write_bytes(b"not parquet")
    if where == "gs":
        uri = f"{request.getfixturevalue('gcs_bucket')}/datasets/retail"
        open_store(uri).put_tree("", data)
        shutil.rmtree(data)                           # nothing local to fall back on
        data = uri
    manifest = make_manifest(data, "bag-of-words", train=("2010-09-01", "2010-11-01"), validation=("2010-11-01", "2010-12-01"))
    path = tmp_path / "manifest.json"
    path.write_text(manifest.to_json())
    monkeypatch.setenv("HPT_TRIAL_MANIFEST", str(path))
    monkeypatch.setenv("HPT_TRIAL_OUTPUT", str(tmp_path / "out"))
    trial.current.cache_clear()
    t = trial.current()
    assert t.objective == {"metric": "mse", "goal": "minimize"} and t.repeat == 0 and t.train == ("2010-09-01", "2010-11-01")
    train, valid = trial.frames(t, columns=["log_revenue"])
    assert list(train.columns) == ["timestamp", "log_revenue"] and len(train) > 0 and len(valid) > 0
    assert set(train["timestamp"].dt.strftime("%Y-%m")) == {"2010-09", "2010-10"}
    assert set(valid["timestamp"].dt.strftime("%Y-%m")) == {"2010-11"}
    trial.current.cache_clear()


def test_the_dry_run_of_tpe_without_windows_counts_configs_times_repeats(tmp_path):
    spec = script_project(tmp_path, ["python", "train.py", "--out=${HPT_TRIAL_OUTPUT}", "${args_no_boolean_flags}"],
                          "stdout", search={"method": "tpe", "trials": 6, "seed": 1}, repeats=2)
    compiled = hpt("compile", spec, "--out", tmp_path / "plan")
    assert compiled.returncode == 0, compiled.stderr
    text = " ".join(compiled.stdout.split())     # rich wraps long lines
    assert "up to 6 configs (≤ 12 trials)" in text, text
    assert "4 configs × 2 repeat(s) = 8 trials" in text, text   # no "× 0 date range(s)" term
    huge = script_project(tmp_path, ["python", "train.py", "${args}"], "stdout",
                          parameters={"lr": list(range(1000)), "activation": list(range(1000))})
    refused = hpt("compile", huge, "--out", tmp_path / "plan-huge")
    assert refused.returncode == 2 and "1,000,000 configs × 1 repeat(s) = 1,000,000 trials" in refused.stderr, refused.stderr


# A script that writes TensorBoard scalars the way torch's SummaryWriter does (tensorboard's EventFileWriter,
# Summary protos; no torch, no hpt): step N every 50 ms, up to 300 steps (15 s) unless it is ended first.
TB_SCRIPT = textwrap.dedent("""\
    import argparse, os, time
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.5)
    args = parser.parse_args()
    writer = EventFileWriter(os.path.join(os.environ["HPT_TRIAL_OUTPUT"], "runs"))
    for step in range(1, 301):
        value = summary_pb2.Summary.Value(tag="val/wape", simple_value=args.lr + 1.0 / step)
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[value])))
        writer.flush()
        time.sleep(0.05)
    writer.close()
    """)


def test_tensorboard_scalars_are_reports_while_the_program_runs_so_a_stop_record_ends_it(tmp_path):
    """A stop record for step 2 is there before the trial starts: the program (which writes TensorBoard files and
    prints nothing) is ended at its first steps, not after its 300, and the row holds step 2's value."""
    from hpt.results.tensorboard import read_scalars
    from hpt.schemas.stopping import StopRecord, stop_key

    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(TB_SCRIPT)
    spec = {"trainer": {"command": ["python", "train.py", "${args}"], "source": "src", "windows": False,
                        "metrics_from": "tensorboard"},
            "parameters": {"lr": 0.25}, "metrics": [{"name": "val/wape", "goal": "minimize"}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = hpt("compile", tmp_path / "spec.json", "--out", plan)
    assert compiled.returncode == 0, compiled.stderr
    [trial_id] = json.loads((plan / "plan.json").read_text())["trials"]
    store = open_store(str(results))
    store.put_once(stop_key(trial_id), StopRecord(trial_id, 2, "median", "worse than the median").to_bytes())
    run = subprocess.run([str(Path(hpt_exe()).parent / "hpt-trial"), str(plan / "trials" / f"{trial_id}.json"),
                          "--results", str(results)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    [row] = csv.DictReader(io.StringIO(store.get(f"rows/{trial_id}.csv").decode()))
    assert row["status"] == "stopped" and "stopped at step 2" in row["reason"], row
    assert float(row["val/wape"]) == pytest.approx(0.25 + 1 / 2)                   # step 2's value
    written = read_scalars(results / "models" / trial_id / "runs")["val/wape"]   # what the program wrote
    assert 2 <= max(step for step, _ in written) < 300, written                     # ended while it ran
    assert '"epoch": 1, "val/wape": 1.25' in run.stderr                            # echoed as hpt:epoch lines


def test_the_tensorboard_collector_reads_files_as_they_grow(tmp_path):
    """Each poll reads on from where the last ended; the newest step waits for a later one (its other tags may
    follow); a record cut in the middle waits for the rest of it."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from hpt.trainer.collectors.tensorboard import TensorBoardFiles

    def event(step, **values):
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values.items()])
        return event_pb2.Event(step=step, summary=summary)

    source, output = tmp_path / "source", tmp_path / "output"
    writer = EventFileWriter(str(source))
    for step, loss in ((1, 1.0), (2, 0.5), (3, 0.25)):
        writer.add_event(event(step, loss=loss))
    writer.add_event(event(3, acc=0.75))
    writer.close()
    [written] = source.iterdir()
    data = written.read_bytes()
    output.mkdir()
    growing = output / written.name
    collect = TensorBoardFiles({"format": "tensorboard"})
    assert collect.poll(output) == []                                   # no file yet
    cut = data.index(b"loss", data.index(b"loss") + 1)                  # inside step 2's record
    growing.write_bytes(data[:cut])
    assert collect.poll(output) == []                                   # step 1 is the newest complete step
    with growing.open("ab") as f:
        f.write(data[cut:])
    assert collect.poll(output) == [EpochReport(1, {"loss": 1.0}), EpochReport(2, {"loss": 0.5})]
    assert collect.poll(output) == []
    assert collect.finish(output) == [EpochReport(3, {"loss": 0.25, "acc": 0.75})]


def test_json_lines_from_a_file_are_read_as_they_grow(tmp_path):
    collect = JsonLines({"format": "json-lines", "file": "log.jsonl"})
    log = tmp_path / "log.jsonl"
    assert collect.reads_files and collect.poll(tmp_path) == []
    log.write_text('{"step": 1, "wape": 0.5}\n{"step": 2, "wa')
    assert collect.poll(tmp_path) == [EpochReport(1, {"wape": 0.5})]    # the unfinished line waits
    with log.open("a") as f:
        f.write('pe": 0.4}\n{"step": 3, "wape": 0.3}')
    assert collect.poll(tmp_path) == [EpochReport(2, {"wape": 0.4})]
    assert collect.finish(tmp_path) == [EpochReport(3, {"wape": 0.3})]  # at the end, the last line too
    (tmp_path / "elsewhere.jsonl").write_text('{"step": 9, "wape": 0.1}\n')
    linked = JsonLines({"format": "json-lines", "file": "link.jsonl"})
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    assert linked.poll(tmp_path) == [] and linked.finish(tmp_path) == []   # a link is not followed


def test_the_curves_writer_writes_what_tensorboard_reads(tmp_path):
    """hpt-trial's own event-file encoder (no tensorboard import at run time), in batches: several tag sets, steps
    past one varint byte, ints, a value beyond float32 (TensorBoard's writer stores ±inf), non-ASCII tags; every
    record's CRC checked by tensorboard's reader. The pure-Python CRC gives google-crc32c's values."""
    import google_crc32c
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from hpt.results.tensorboard import read_scalars
    from hpt.trainer.user import _crc32c_python, _Curves

    curves = _Curves(tmp_path)
    curves.add([EpochReport(1, {"loss": 0.5, "wape": 2}), EpochReport(300, {"loss": 0.25, "wape": 1})])
    curves.add([EpochReport(70000, {"val/ähm": 1e39}), EpochReport(70001, {"loss": -1e40, "x": 0.125})])
    curves.add([])
    curves.close()
    [path] = tmp_path.iterdir()
    records = list(EventFileLoader(str(path))._iterator)   # the raw records, each one's CRCs checked
    assert len(records) == 5                                 # the file's version event, then one per report
    assert read_scalars(tmp_path) == {"loss": [(1, 0.5), (300, 0.25), (70001, float("-inf"))], "wape": [(1, 2.0), (300, 1.0)],
                                      "val/ähm": [(70000, float("inf"))], "x": [(70001, 0.125)]}
    for data in (b"", b"abc", bytes(range(256)) * 3):
        assert _crc32c_python(data) == google_crc32c.value(data)
