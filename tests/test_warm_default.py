"""Warm starts by default (hpt.executor.warm): which trials a default `hpt apply` forks from a warm worker on the
local and docker backends, which start fresh and why (said on stderr), and that --warm / --no-warm override it.
The results of a warm trial equal a fresh process's bit for bit: tests/test_apply_e2e.py, test_warm_entrypoint.py."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from hpt.executor.backend import Submission
from hpt.executor.backends.docker import DockerBackend
from hpt.executor.backends.local import LocalBackend
from hpt.executor.warm import COMMAND, GPU, USER_CONTAINER, fresh_note, fresh_reason, warm_choice
from trial_factory import make_manifest

CPU = {"gpus": 0, "cpus": 1, "memory": "1Gi"}


def manifests(tmp_path: Path):
    cpu = make_manifest(tmp_path, "bag-of-words", epochs=1, seed=0, resources=CPU, image="img:1")
    gpu = make_manifest(tmp_path, "bag-of-words", epochs=1, seed=1, resources={**CPU, "gpus": 1}, image="img:1")
    user = {"source": str(tmp_path), "digest": "0" * 64}
    entry = dataclasses.replace(cpu, trainer={**user, "entrypoint": "model.train:main"})
    command = dataclasses.replace(cpu, trainer={**user, "command": ["bash", "train.sh"]})
    return cpu, gpu, entry, command


def test_which_trials_start_fresh_by_default(tmp_path):
    cpu, gpu, entry, command = manifests(tmp_path)
    assert [fresh_reason(m) for m in (cpu, gpu, entry, command)] == [None, GPU, None, COMMAND]
    assert [fresh_reason(m, containers=True) for m in (cpu, gpu, entry, command)] == [None, GPU, USER_CONTAINER,
                                                                                       USER_CONTAINER]
    assert [warm_choice(None, m) for m in (cpu, gpu, entry, command)] == [True, False, True, False]
    assert all(warm_choice(True, m) for m in (cpu, gpu, command))          # --warm: every trial
    assert not any(warm_choice(False, m) for m in (cpu, entry))            # --no-warm: none
    assert not warm_choice(None, cpu, backend_reason="own command")
    assert fresh_note([None, None], "x") is None
    assert fresh_note([GPU, None, GPU], "the local backend") == f"note: 2 trial(s) start fresh on the local backend, not warm: 2× {GPU}"


def test_the_local_backend_forks_hpt_trainer_of_this_python_only(tmp_path, monkeypatch):
    cpu, gpu, _, _ = manifests(tmp_path)
    sub = Submission.of(cpu, str(tmp_path / "r"))
    monkeypatch.delenv("HPT_TRIAL_COMMAND", raising=False)
    assert LocalBackend.with_options(state_dir=tmp_path / "s")._warm_for(sub)
    assert not LocalBackend.with_options(state_dir=tmp_path / "s", warm=False)._warm_for(sub)
    assert not LocalBackend.with_options(state_dir=tmp_path / "s")._warm_for(Submission.of(gpu, str(tmp_path / "r")))
    other = LocalBackend.with_options(state_dir=tmp_path / "s", command=["/opt/elsewhere/bin/hpt-trial"])
    assert not other._warm_for(sub) and other._fresh_reasons([sub]) == []   # nothing forks there: nothing to say
    monkeypatch.setenv("HPT_TRIAL_COMMAND", f"{sys.executable} -m hpt.trainer")
    assert not LocalBackend.with_options(state_dir=tmp_path / "s")._warm_for(sub)    # the user's own choice of command
    assert LocalBackend.with_options(state_dir=tmp_path / "s", warm=True)._warm_for(sub)


def test_the_docker_backend_forks_only_hpt_trainer_on_no_gpu(tmp_path):
    cpu, gpu, entry, _ = manifests(tmp_path)
    backend = DockerBackend.with_options(docker_client=object(), gpus_available=["0"])
    subs = [Submission.of(m, str(tmp_path / "r")) for m in (cpu, gpu, entry)]
    assert [backend._warm_for(s) for s in subs] == [True, False, False]   # a user trainer: a container per trial
    assert DockerBackend.with_options(docker_client=object(), warm=True)._warm_for(subs[2])
    assert not DockerBackend.with_options(docker_client=object(), warm=False)._warm_for(subs[0])
