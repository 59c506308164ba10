"""`hpt image build`'s exit codes: the build script's user error is exit 2, any other failure exit 1 with one line."""
from __future__ import annotations

import subprocess

from typer.testing import CliRunner

import hpt.commands.image as image_command
from hpt.cli import app

runner = CliRunner()


def _script_exits(monkeypatch, code: int) -> list[list[str]]:
    calls: list[list[str]] = []

    def run(argv, check=False):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, code)

    monkeypatch.setattr(image_command.subprocess, "run", run)
    return calls


def test_a_failed_build_is_exit_1_with_its_exit_code(monkeypatch):
    calls = _script_exits(monkeypatch, 1)
    result = runner.invoke(app, ["image", "build", "--offline"])
    assert result.exit_code == 1, result.output
    assert "image build failed (exit code 1)" in result.output
    assert "Traceback" not in result.output
    assert len(calls) == 1 and calls[0][0].endswith("build-offline.sh") and "--online" not in calls[0]


def test_the_scripts_user_error_is_exit_2(monkeypatch):
    _script_exits(monkeypatch, 2)
    result = runner.invoke(app, ["image", "build", "--offline"])
    assert result.exit_code == 2, result.output
    assert "cannot build the image" in result.output
