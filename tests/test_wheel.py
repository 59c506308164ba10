"""The wheel ships everything `hpt compile` needs (schemas, catalog as package data).

Build the wheel from a copy of the source tree (offline: no isolation, the test venv's setuptools), install ONLY that wheel into a fresh venv, and compile
the seed's spec from a folder outside the repository. The third-party dependencies come from the
test venv's site-packages through a plain path entry (a `.pth` line is added to sys.path but the
.pth files in that folder are not run), so the test venv's editable `hpt` cannot leak in: `hpt` can
only come from the wheel.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from hpt.schemas.dataset import DatasetInfo

REPO = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", ".hypothesis",
                              ".pytest_cache", "plan", "plan-*", "hpt-results", ".cache", ".build", "bench")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_compiles_the_seed_spec(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=SKIP)
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check", "--outdir", str(tmp_path / "dist")], cwd=source)
    (wheel,) = (tmp_path / "dist").glob("hpt-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip())
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # deps only; no .pth processing there
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)], cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HPT_DEMO_DATA=str(tmp_path / "demo"), NO_GCE_CHECK="True", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    where = run([str(python), "-c", "import hpt, hpt.schemas, hpt.compiler; print(hpt.__file__); print(hpt.compiler.__file__)"],
                cwd=tmp_path, env=env).stdout.split()
    assert all(path.startswith(str(site)) for path in where), where  # from the wheel, not the repo

    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(REPO / "examples" / "seed.json", work / "seed.json")
    # the seed's 2017 window needs data that covers it: a dataset.json is all the compiler reads
    info = DatasetInfo(name="t", timestamp="ts", text="text", target="y", start=dt.date(2016, 1, 1), end=dt.date(2017, 12, 31))
    (work / "data").mkdir()
    (work / "data" / "dataset.json").write_text(info.to_json())
    result = run([str(venv / "bin" / "hpt"), "compile", "seed.json", "--today", "2026-11-26", "--format", "json",
                  "--data", "data"], cwd=work, env=env)
    summary = json.loads(result.stdout)
    assert summary["trials"] == 27 and "typographic dashes" in result.stderr
    plan = json.loads((work / "plan" / "plan.json").read_text())
    assert len(list((work / "plan" / "trials").glob("t-*.json"))) == 27 == len(plan["trials"])
    schema = json.loads(run([str(venv / "bin" / "hpt"), "schema", "trial"], cwd=work, env=env).stdout)
    assert schema["title"] == "hpt trial manifest"
