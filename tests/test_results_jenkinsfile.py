"""examples/Jenkinsfile stays in step with the CLI: every `hpt` command and option it uses exists."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer.main

from hpt.cli import app

JENKINSFILE = Path(__file__).resolve().parents[1] / "examples" / "Jenkinsfile"


def _hpt_calls(text: str) -> list[list[str]]:
    """Each shell line that runs hpt (inside sh '...' or a multi-line sh block) as [command, words...]."""
    body = re.sub(r"\\\n\s*", " ", text)  # join shell continuation lines
    calls = []
    for line in body.splitlines():
        match = re.match(r"^\s*(?:sh\s+')?hpt (\w+)([^'>|#]*)", line)
        if match:
            args = re.sub(r"\$\{\w+:\+([^}]*)\}", r"\1", match.group(2)).replace('"', "")
            calls.append([match.group(1)] + shlex.split(args))
    return calls


def test_jenkinsfile_uses_only_real_commands_and_options():
    cli = typer.main.get_command(app)
    calls = _hpt_calls(JENKINSFILE.read_text())
    used = {c[0] for c in calls}
    assert {"compile", "apply", "results", "report"} <= used
    for call in calls:
        command = cli.get_command(None, call[0])   # the CLI loads a command's module when it is named
        assert command is not None, f"the CLI has no command hpt {call[0]}"
        # Hidden options are deprecated spellings (`--output`): the example shows the current ones.
        opts = {o for p in command.params if not getattr(p, "hidden", False)
                for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
        for word in call[1:]:
            if word.startswith("--"):
                assert word in opts, f"hpt {call[0]} has no option {word}"


def test_jenkinsfile_maps_exit_codes_and_publishes_junit():
    text = JENKINSFILE.read_text()
    assert "returnStatus: true" in text and "rc == 1" in text and "unstable(" in text and "error(" in text
    assert "--junit hpt-junit.xml" in text and "junit allowEmptyResults: true, testResults: 'hpt-junit.xml'" in text
    assert "--dry-run" in text and "archiveArtifacts" in text and "report.html" in text
