"""Every command README.md shows runs as written, on a fresh copy of the repository's files.

The README is parsed generically (whoever adds a command is covered): every fenced `bash`/`sh`/`shell`
block is one bash script run from the copy's root, in README order, and each command in it must exit 0,
or the code its trailing comment announces with `# exit N` (a failure shown on purpose). A block whose
preceding line is `<!-- readme-commands: skip (why) -->` is not run (`make test` would run this suite).

The copy has what a clone has (git's tracked and not-ignored files) and `.venv` pointing at this
interpreter's environment; the demo dataset is the shared small slice of the real one (HPT_DEMO_DATA),
so the trials are real but short.

A block may also be checked for what it leaves behind (`AFTER_BLOCK`): the own-model example's block is the one
run of examples/own-model on the local backend in the suite, so what it produces is asserted there.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from executor_support import hpt_exe

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SHELLS = {"bash", "sh", "shell", "console"}
SKIP_MARK = "readme-commands: skip"
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_EXPECT = re.compile(r"(?:^|\s)#\s*exit (\d+)\b")


@dataclass
class Command:
    line: int          # 1-based line in the README where it starts
    text: str          # the command as bash reads it (continuations joined)
    expect: int = 0    # its exit code: 0, or the `# exit N` its comment announces


@dataclass
class Block:
    line: int
    commands: list[Command] = field(default_factory=list)

    def script(self) -> str:
        """The block as one bash script: each command's exit code checked before the next runs."""
        out = ["set -u"]
        for c in self.commands:
            quoted = c.text.replace("'", "'\"'\"'")
            out.append(c.text)
            out.append(f"rc=$?; if [ $rc -ne {c.expect} ]; then echo 'README.md:{c.line}: exit '$rc', expected "
                       f"{c.expect}: {quoted}' >&2; exit 97; fi")
        return "\n".join(out) + "\n"


def shell_blocks(text: str) -> list[Block]:
    """The README's shell blocks with their commands, skipped ones left out."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang = match.group(2), match.group(3).lower()
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body_start = i + 1
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[0] * len(fence)):
            i += 1
        body = lines[body_start:i]
        i += 1
        if lang not in SHELLS or SKIP_MARK in previous:
            continue
        block = Block(line=body_start)
        pending, start = "", 0
        for number, raw in enumerate(body, body_start + 1):
            if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
                continue
            if not pending:
                start = number
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            command = pending + raw
            pending = ""
            expect = _EXPECT.search(command)
            block.commands.append(Command(start, command.strip(), int(expect.group(1)) if expect else 0))
        if block.commands:
            blocks.append(block)
    return blocks


def test_the_parser_reads_commands_markers_and_skips():
    text = "\n".join([
        "<!-- readme-commands: skip (installs) -->", "```bash", "make test", "```",
        "```bash", "# a comment", "", "a --x   # run it", "b \\", "  --y   # exit 2: on purpose", "cd sub && c",
        "```", "```json", '{"not": "a command"}', "```", "```", "plain text", "```"])
    (block,) = shell_blocks(text)
    assert [(c.text, c.expect) for c in block.commands] == [
        ("a --x   # run it", 0), ("b    --y   # exit 2: on purpose", 2), ("cd sub && c", 0)]
    assert block.commands[1].line == 9


README_BLOCKS = shell_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_commands():
    commands = [c.text for b in README_BLOCKS for c in b.commands]
    assert any("hpt compile" in c for c in commands) and any("hpt apply" in c for c in commands)
    assert not any(c.startswith("make ") for c in commands)  # the skipped block stays skipped


def fresh_copy(dest: Path) -> None:
    """What a clone holds: git's tracked files and the new ones it does not ignore."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPO / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.fixture(scope="module")
def readme_checkout(tmp_path_factory, small_dataset) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("readme") / "hpt"
    root.mkdir()
    fresh_copy(root)
    (root / ".venv").symlink_to(Path(sys.prefix))   # `.venv/bin/hpt` as `make demo` leaves it
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_EMULATOR_HOST", "HPT_RESULTS")}
    env.update(HPT_DEMO_DATA=str(small_dataset), NO_GCE_CHECK="True", TERM="dumb", COLUMNS="160")
    return root, env


@pytest.mark.parametrize("block", README_BLOCKS, ids=[f"README.md:{b.line}" for b in README_BLOCKS])
def test_readme_block_runs_as_written(block: Block, readme_checkout):
    root, env = readme_checkout
    result = subprocess.run(["bash", "-c", block.script()], cwd=root, env=env, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, f"{result.stderr[-4000:]}\n--- stdout ---\n{result.stdout[-2000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    for key, check in AFTER_BLOCK.items():
        if any(key in c.text for c in block.commands):
            check(root)


def check_own_model(root: Path) -> None:
    """examples/own-model after its README block: a user's forecaster on the real Metro Interstate traffic data
    (imported with `hpt data import`), rotating ranges and fidelities, and every analysis command on its store."""
    example = root / "examples" / "own-model"
    plan, results = example / "plan", example / "results"

    def hpt(*args) -> subprocess.CompletedProcess:
        return subprocess.run([hpt_exe(), *map(str, args)], capture_output=True, text=True, timeout=900)

    recorded = json.loads((plan / "plan.json").read_text())
    assert len(recorded["trials"]) == 16
    assert json.loads((example / "data" / "traffic" / "dataset.json").read_text())["rows"] > 40000
    rows = list(csv.DictReader(io.StringIO((results / "results.csv").read_text())))
    assert len(rows) == 16 and {r["status"] for r in rows} == {"done"}
    assert {r["fidelity"] for r in rows} == {"1m-3e", "full"}
    assert len({(r["train_start"], r["valid_start"]) for r in rows if r["fidelity"] == "full"}) == 2
    full = [r for r in rows if r["fidelity"] == "full"]
    # The model learns: every full-budget trial beats the seasonal-naive forecast (same hour a day earlier).
    assert all(float(r["mse"]) < float(r["baseline_mse"]) for r in full)
    assert all(r["param.layers"] == "2" and r["param.lags"] == "24" and r["param.lr"] == "0.003" for r in rows)   # catalog defaults, resolved
    models = results / "models" / full[0]["trial_id"]
    assert {"model.pt", "scaling.json", "metrics.json", "manifest.json", "trial.log"} <= {p.name for p in models.iterdir()}

    by_config = hpt("results", results, "--by", "config", "--format", "json")
    assert by_config.returncode == 0, by_config.stderr
    configs = json.loads(by_config.stdout)["by_config"]["configs"]
    assert len(configs) == 4 and all(c["n_ranges"] == 2 for c in configs)
    trends = hpt("results", results, "--trends", "--format", "json")
    assert trends.returncode == 0 and "hidden" in trends.stdout and "tanh" in trends.stdout, trends.stderr
    fidelity = hpt("fidelity", results, "--format", "json")
    assert fidelity.returncode == 0, fidelity.stderr
    assert "1m-3e" in fidelity.stdout and "spearman" in fidelity.stdout.lower()
    report = hpt("report", results, "--out", root / "own-model-report.html")
    assert report.returncode == 0, report.stderr
    page = (root / "own-model-report.html").read_text()
    assert "hidden=64" in page and "tags: mse" in page   # the configs, and learning curves from the hpt:epoch reports


# what a block leaves behind, checked right after it ran: {text a command of the block contains: check(root)}
AFTER_BLOCK = {"cd examples/own-model": check_own_model}


def test_the_own_model_example_is_run_by_a_block():
    assert any(key in c.text for key in AFTER_BLOCK for b in README_BLOCKS for c in b.commands)
