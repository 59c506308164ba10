"""Every command README.md shows runs as written, on a fresh copy of the repository's files.

The README is parsed generically (whoever adds a command is covered): every fenced `bash`/`sh`/`shell`
block is one bash script run from the copy's root, in README order, and each command in it must exit 0,
or the code its trailing comment announces with `# exit N` (a failure shown on purpose). A block whose
preceding line is `<!-- readme-commands: skip (why) -->` is not run (`make test` would run this suite).

The copy has what a clone has (git's tracked and not-ignored files) and `.venv` pointing at this
interpreter's environment; the demo dataset is the shared small slice of the real one (HPT_DEMO_DATA),
so the trials are real but short.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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
