"""The Docker backend: real trials in real containers of the offline-built trainer image.

Every test here talks to a real Docker daemon (marked `docker`: skipped without one unless
HPT_REQUIRE_DOCKER=1) except the dry-run and pure-logic tests at the end, which need none.
The image is built (or found up to date) by images/build-offline.sh, as CI does before pytest.
Each test uses its own experiment id, so the containers it looks for are its own.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from executor_support import write_plan
from hpt.executor.backend import Phase, Submission
from hpt.executor.backends.docker import (LABEL_ATTEMPT, LABEL_EXPERIMENT, LABEL_SLOT, LABEL_STORE, LABEL_TRIAL,
                                          LABEL_VERSION, DockerBackend, container_name, detect_gpus,
                                          rewrite_emulator_host)
from hpt.store import open_store, row_key, store_id
from hpt.schemas.errors import UserError
from hpt.schemas.resources import memory_bytes
from hpt.schemas.row import parse_row_csv
from trial_factory import make_manifest

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "hpt-trainer:latest"
FAST = {"epochs": 1, "batch_size": 512, "vocab_size": 1000, "embedding_dim": 16, "hidden_size": 16}


# --- helpers ---------------------------------------------------------------------------------------
def experiment() -> str:
    return "e-" + uuid.uuid4().hex[:12]


def hpt(*args: str, env: dict[str, str] | None = None, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpt.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def containers(client, exp: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_EXPERIMENT}={exp}"})


def rows(store_uri: str) -> dict[str, dict[str, str]]:
    store = open_store(store_uri)
    return {k[len("rows/"):-4]: parse_row_csv(store.get(k).decode()) for k in store.list("rows/") if k.endswith(".csv")}


def manifest(dataset: Path, exp: str, seed: int = 0, resources: dict | None = None, image: str = IMAGE, **params):
    return make_manifest(dataset, "bag-of-words", **{**FAST, **params}, seed=seed, experiment=exp, image=image,
                         resources=resources or {"gpus": 0, "cpus": 1, "memory": "2Gi"})


def submission(m, results: str) -> Submission:
    return Submission.of(m, results)


@pytest.fixture(scope="session")
def trainer_image(docker_client) -> str:
    """The trainer image, built offline if missing or out of date (seconds when up to date)."""
    proc = subprocess.run([str(ROOT / "images" / "build-offline.sh")], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"images/build-offline.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return IMAGE


@pytest.fixture(scope="session")
def shared_dataset(small_dataset) -> Path:
    """The small dataset where any uid can read it (a container may run as another user)."""
    folder = Path(tempfile.mkdtemp(prefix="hpt-docker-data-"))
    shutil.copytree(small_dataset, folder, dirs_exist_ok=True)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# --- end to end ------------------------------------------------------------------------------------
@pytest.mark.docker
def test_plan_runs_in_containers_as_the_calling_user_with_results_in_a_folder(docker_client, trainer_image,
                                                                              shared_dataset):
    """`hpt apply --backend docker`: each trial in a container running as a non-root user that owns the
    results folder (as it would for a normal user), writing rows and models into the bind-mounted
    folder; logs saved, containers removed."""
    base = Path(tempfile.mkdtemp(prefix="hpt-docker-e2e-"))
    try:
        base.chmod(0o755)
        exp = experiment()
        ms = [manifest(shared_dataset, exp, seed=s) for s in range(2)]
        plan_dir = write_plan(base / "plan", ms)
        results = base / "results"
        uid, gid = os.getuid(), os.getgid()
        env = {}
        if uid == 0:  # CI runs as root: play a normal user, as whom the folder is owned
            uid = gid = 4321
            results.mkdir()
            os.chown(results, uid, gid)
            env["HPT_DOCKER_USER"] = f"{uid}:{gid}"
        proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(results), "-f", "json", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = rows(str(results))
        assert set(got) == {m.id for m in ms}
        for m in ms:
            row = got[m.id]
            assert row["status"] == "done", row
            assert float(row["mse"]) > 0
            # the folder is mounted at the same path: the row's model_uri is valid on the host
            assert row["model_uri"].startswith(str(results)) and Path(row["model_uri"]).is_dir()
            assert (results / "logs" / f"{m.id}.log").read_text().count("attempt 1") == 1
            assert (results / "rows" / f"{m.id}.csv").stat().st_uid == uid
            assert Path(row["model_uri"]).stat().st_uid == uid
        finished = [e for e in events(proc.stdout) if e["event"] == "run-finished"][-1]
        assert finished["done"] == 2 and finished["failed"] == 0
        assert containers(docker_client, exp) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.docker
def test_plan_writes_results_to_gcs_emulator_from_containers(docker_client, trainer_image, shared_dataset,
                                                             gcs_bucket, tmp_path):
    """gs:// results: the container reaches fake-gcs-server on the host via host.docker.internal."""
    exp = experiment()
    m = manifest(shared_dataset, exp)
    plan_dir = write_plan(tmp_path / "plan", [m])
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", gcs_bucket, "-f", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = open_store(gcs_bucket)
    row = parse_row_csv(store.get(row_key(m.id)).decode())
    assert row["status"] == "done" and row["model_uri"].startswith(gcs_bucket)
    assert store.list(f"models/{m.id}/"), "the model was not uploaded"
    assert "attempt 1" in store.get(f"logs/{m.id}.log").decode()
    assert containers(docker_client, exp) == []


@pytest.mark.docker
def test_two_stores_on_one_docker_host_keep_their_own_containers(docker_client, trainer_image, shared_dataset,
                                                                 tmp_path):
    """One plan applied into two stores at once on one Docker host, and a dry-run line for a third store run
    by hand: each store's trials run once, in containers of their own; nobody adopts or removes another's."""
    exp = experiment()
    ms = [manifest(shared_dataset, exp, seed=s) for s in range(3)]
    plan_dir = write_plan(tmp_path / "plan", ms)
    by_hand = str(tmp_path / "store-by-hand")
    os.makedirs(by_hand)  # docker's --mount wants the folder there (hpt apply makes it; by hand, the user does)
    line = hpt("apply", str(plan_dir), "--backend", "docker", "--results", by_hand, "--dry-run",
               "--no-warm").stdout.splitlines()[0]
    subprocess.run(["bash", "-c", line + " >/dev/null"], check=True)   # a dry-run line, run by hand
    stores = [str(tmp_path / "store-a"), str(tmp_path / "store-b")]
    procs = [subprocess.Popen([sys.executable, "-m", "hpt.cli", "apply", str(plan_dir), "--backend", "docker",
                               "--results", s, "--parallel", "2", "-f", "json", "--no-warm"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in stores]
    outs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    for (out, _), store in zip(outs, stores):
        evs = events(out)
        assert sorted(e["trial_id"] for e in evs if e["event"] == "trial-started") == sorted(m.id for m in ms)
        assert not [e for e in evs if e["event"] in ("trial-adopted", "trial-retrying", "trial-failed")], evs
        got = rows(store)
        assert {t: r["status"] for t, r in got.items()} == {m.id: "done" for m in ms}
        for m in ms:
            assert open_store(store).get(f"logs/{m.id}.log").decode().count(f"===== {m.id} attempt") == 1
    # The hand-run container was left alone: it finishes into its own store and removes itself (--rm).
    deadline = time.monotonic() + 120
    while containers(docker_client, exp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert containers(docker_client, exp) == []
    assert rows(by_hand)[ms[0].id]["status"] == "done"


# --- failures the trainer cannot record ------------------------------------------------------------
@pytest.mark.docker
def test_oom_killed_trial_says_so_in_its_row(docker_client, trainer_image, shared_dataset, tmp_path):
    exp = experiment()
    m = manifest(shared_dataset, exp, resources={"gpus": 0, "cpus": 1, "memory": "40Mi"})
    plan_dir = write_plan(tmp_path / "plan", [m])
    results = tmp_path / "results"
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(results), "--retries", "0", "--no-warm")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = rows(str(results))[m.id]
    assert row["status"] == "failed"
    assert row["reason"].startswith("OOM-killed (memory limit 40Mi)"), row["reason"]
    assert (results / "logs" / f"{m.id}.log").exists()
    assert containers(docker_client, exp) == []


@pytest.mark.docker
def test_timed_out_trial_is_killed_and_recorded(docker_client, trainer_image, shared_dataset, tmp_path):
    exp = experiment()
    m = manifest(shared_dataset, exp, epochs=500, early_stopping_patience=500)
    plan_dir = write_plan(tmp_path / "plan", [m])
    results = tmp_path / "results"
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(results), "--timeout", "3", "--no-warm")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = rows(str(results))[m.id]
    assert row["status"] == "failed" and row["reason"].startswith("timed out after 3 s"), row
    assert containers(docker_client, exp) == []


@pytest.mark.docker
def test_missing_image_is_one_clear_error_before_anything_runs(docker_client, shared_dataset, tmp_path):
    exp = experiment()
    ms = [manifest(shared_dataset, exp, seed=s, image="hpt-no-such-image:never") for s in range(2)]
    plan_dir = write_plan(tmp_path / "plan", ms)
    results = tmp_path / "results"
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(results))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    assert "hpt-no-such-image:never" in message and "hpt image build" in message
    assert "Traceback" not in proc.stderr
    assert rows(str(results)) == {}
    assert containers(docker_client, exp) == []


@pytest.mark.docker
def test_gpu_trial_on_a_host_without_gpus(docker_client, trainer_image, shared_dataset, tmp_path):
    """Up front: more GPUs than the host has is a user error. And if a GPU is named that the daemon
    cannot give (no NVIDIA runtime here), the trial fails with docker's reason and leaves no container."""
    exp = experiment()
    m = manifest(shared_dataset, exp, resources={"gpus": 1, "cpus": 1, "memory": "1Gi"})
    plan_dir = write_plan(tmp_path / "plan", [m])
    results = tmp_path / "results"
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(results), env={"HPT_GPUS": ""})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "asks for 1 GPU(s); this host has none" in " ".join(proc.stderr.split())
    assert containers(docker_client, exp) == []
    if detect_gpus():
        pytest.skip("this host has GPUs: a start failure cannot be provoked")
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(results), env={"HPT_GPUS": "0"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = rows(str(results))[m.id]
    assert row["status"] == "failed" and row["reason"].startswith("could not start: "), row
    assert "gpu" in row["reason"].lower()
    assert containers(docker_client, exp) == []


# --- crash and re-attach ---------------------------------------------------------------------------
@pytest.mark.docker
def test_reapply_after_kill_9_adopts_the_running_container(docker_client, trainer_image, shared_dataset, tmp_path):
    exp = experiment()
    m = manifest(shared_dataset, exp, epochs=20, early_stopping_patience=30)  # outlives the re-apply's start
    plan_dir = write_plan(tmp_path / "plan", [m])
    results = tmp_path / "results"
    args = ["apply", str(plan_dir), "--backend", "docker", "--results", str(results), "-f", "json", "--no-warm"]
    first = subprocess.Popen([sys.executable, "-m", "hpt.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        running = []
        while time.monotonic() < deadline and not running:
            running = [c for c in containers(docker_client, exp) if c.status == "running"]
            time.sleep(0.1)
        assert running, "the container never ran"
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    original = running[0]
    original.reload()
    assert original.status == "running", "the container did not outlive hpt apply"

    proc = hpt("apply", *args[1:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evs = events(proc.stdout)
    assert [e["trial_id"] for e in evs if e["event"] == "trial-adopted"] == [m.id]
    assert not [e for e in evs if e["event"] == "trial-started"], "a duplicate container was started"
    assert rows(str(results))[m.id]["status"] == "done"
    assert open_store(str(results)).list("rows/") == [row_key(m.id)]
    assert containers(docker_client, exp) == []


@pytest.mark.docker
def test_adopt_keeps_live_containers_cleans_up_dead_ones_and_never_duplicates(docker_client, trainer_image,
                                                                             shared_dataset, tmp_path):
    exp = experiment()
    backend = DockerBackend.with_options(docker_client=docker_client, warm=False)
    ids = [manifest(shared_dataset, exp, seed=s) for s in range(3)]
    results = open_store(str(tmp_path / "results")).uri

    def leftover(m, command: str, start: bool):
        c = docker_client.containers.create(
            IMAGE, entrypoint=["python3", "-c", command], name=container_name(exp, m.id, store_id(results)),
            labels={LABEL_EXPERIMENT: exp, LABEL_STORE: store_id(results), LABEL_TRIAL: m.id, LABEL_ATTEMPT: "1",
                    LABEL_VERSION: "0"})
        if start:
            c.start()
        return c

    live = leftover(ids[0], "import time; time.sleep(60)", True)
    dead = leftover(ids[1], "raise SystemExit(3)", True)
    never = leftover(ids[2], "pass", False)
    try:
        dead.wait(timeout=60)
        assert backend.adopt(exp, open_store(str(tmp_path / "other-store")).uri) == {}  # not that store's
        adopted = backend.adopt(exp, results)
        assert set(adopted) == {ids[0].id, ids[1].id}
        assert adopted[ids[0].id].attempt == 1
        assert backend.poll(adopted[ids[0].id]).phase == Phase.RUNNING
        ended = backend.poll(adopted[ids[1].id])
        assert ended.phase == Phase.FAILED and ended.reason == "exit code 3" and ended.exit_code == 3
        assert {c.id for c in containers(docker_client, exp)} == {live.id, dead.id}, "the never-started one stays"
        # A second apply racing the first: submitting the live trial attaches to its container.
        twin = backend.submit(submission(ids[0], results))
        assert twin.container_id == live.id
        assert len(containers(docker_client, exp)) == 2
        for handle in (adopted[ids[0].id], adopted[ids[1].id]):
            backend.cancel(handle)
            backend.release(handle)
        assert containers(docker_client, exp) == []
        del never
    finally:
        for c in containers(docker_client, exp):
            c.remove(force=True)


@pytest.mark.docker
def test_hpt_delete_backend_docker_removes_the_plans_containers_of_one_store_or_all(docker_client, trainer_image,
                                                                                   shared_dataset, tmp_path):
    """What a killed apply leaves running (here: stand-in containers with the labels `hpt apply` gives), removed
    through the CLI: --results narrows it to that store's; another plan's container is never touched."""
    exp, bystander_exp = experiment(), experiment()
    m = manifest(shared_dataset, exp)
    plan_dir = write_plan(tmp_path / "plan", [m])
    stores = [str(tmp_path / "store-a"), str(tmp_path / "store-b")]

    def leftover(exp_id: str, store: str):
        sid = store_id(open_store(store).uri)
        return docker_client.containers.run(
            IMAGE, entrypoint=["python3", "-c", "import time; time.sleep(120)"], detach=True,
            name=container_name(exp_id, m.id, sid), labels={LABEL_EXPERIMENT: exp_id, LABEL_STORE: sid, LABEL_TRIAL: m.id})

    a, b, other = leftover(exp, stores[0]), leftover(exp, stores[1]), leftover(bystander_exp, stores[0])
    try:
        listed = hpt("delete", str(plan_dir), "--backend", "docker", "--dry-run")
        assert listed.returncode == 0, listed.stderr
        assert sorted(listed.stdout.split()) == sorted(f"container/{c.name}" for c in (a, b))
        assert len(containers(docker_client, exp)) == 2                  # a dry run removes nothing
        only_a = hpt("delete", str(plan_dir), "-b", "docker", "--results", stores[0], "-f", "json")
        assert only_a.returncode == 0, only_a.stderr
        assert json.loads(only_a.stdout)["containers"] == [a.name]
        assert [c.name for c in containers(docker_client, exp)] == [b.name]
        every = hpt("delete", str(plan_dir), "-b", "docker")
        assert every.returncode == 0 and every.stdout.split() == [f"container/{b.name}"], every.stderr
        assert "deleted 1 container(s)" in every.stderr
        assert containers(docker_client, exp) == []
        assert [c.id for c in containers(docker_client, bystander_exp)] == [other.id]   # another plan's: kept
    finally:
        for c in containers(docker_client, exp) + containers(docker_client, bystander_exp):
            c.remove(force=True)


# --- what a container gets -------------------------------------------------------------------------
@pytest.mark.docker
def test_labels_limits_user_mounts_and_env_as_docker_inspect_sees_them(docker_client, trainer_image,
                                                                      shared_dataset, tmp_path, monkeypatch):
    exp = experiment()
    creds = tmp_path / "creds.json"
    creds.write_text('{"type": "service_account", "private_key": "SECRET"}')
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    m = manifest(shared_dataset, exp, resources={"gpus": 0, "cpus": 0.5, "memory": "300Mi"})
    backend = DockerBackend.with_options(docker_client=docker_client, warm=False)
    sub = submission(m, "gs://some-bucket/exp")
    backend.preflight([sub])
    handle = backend.submit(sub)
    try:
        info = docker_client.api.inspect_container(handle.container_id)
        labels = info["Config"]["Labels"]
        assert labels[LABEL_EXPERIMENT] == exp and labels[LABEL_TRIAL] == m.id and labels[LABEL_VERSION]
        assert labels[LABEL_ATTEMPT] == "1"
        host = info["HostConfig"]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == 300 * 2**20 and host["MemorySwap"] == 300 * 2**20
        assert host["Init"] is True
        assert "host.docker.internal:host-gateway" in host["ExtraHosts"]
        assert info["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        if os.getuid() == 0:
            assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        assert env["HPT_MANIFEST"] == m.to_json()          # the manifest, unchanged
        assert env["HPT_RESULTS"] == "gs://some-bucket/exp"
        assert env["HPT_CPUS"] == "0.5" and env["OMP_NUM_THREADS"] == "1"
        assert env["STORAGE_EMULATOR_HOST"] == "http://host.docker.internal:4443"
        assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/run/secrets/hpt/google-credentials.json"
        mounts = {mt["Destination"]: mt for mt in info["Mounts"]}
        assert mounts[str(shared_dataset)]["RW"] is False
        assert mounts["/var/run/secrets/hpt/google-credentials.json"]["RW"] is False
        assert mounts["/var/run/secrets/hpt/google-credentials.json"]["Source"] == str(creds)
        image_user = docker_client.images.get(IMAGE).attrs["Config"]["User"]
        assert image_user and image_user.split(":")[0] not in ("0", "root"), "the image must not run as root"
    finally:
        backend.cancel(handle)
        status = backend.poll(handle)
        assert status.phase == Phase.FAILED and status.reason.startswith("cancelled")
        backend.release(handle)
    assert containers(docker_client, exp) == []


def test_no_daemon_is_a_user_error(tmp_path, shared_dataset):
    exp = experiment()
    plan_dir = write_plan(tmp_path / "plan", [manifest(shared_dataset, exp)])
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(tmp_path / "r"),
               env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no Docker daemon answers" in proc.stderr and "Traceback" not in proc.stderr


# --- no daemon needed ------------------------------------------------------------------------------
def test_dry_run_prints_docker_run_lines_without_a_daemon(tmp_path, gcs_bucket):
    exp = experiment()
    data = tmp_path / "data"
    data.mkdir()
    ms = [make_manifest(data, "bag-of-words", epochs=1, seed=0, experiment=exp, image="hpt-trainer:latest",
                        resources={"gpus": 2, "cpus": 4, "memory": "8Gi"}),
          make_manifest(data, "bag-of-words", epochs=1, seed=1, experiment=exp, image="hpt-trainer:latest")]
    plan_dir = write_plan(tmp_path / "plan", ms)
    creds = tmp_path / "creds.json"
    creds.write_text('{"private_key": "TOP-SECRET"}')
    port = os.environ["STORAGE_EMULATOR_HOST"].rsplit(":", 1)[1]   # the emulator on 127.0.0.1
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", gcs_bucket, "--dry-run", "--no-warm",
               env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "HPT_GPUS": "",
                    "GOOGLE_APPLICATION_CREDENTIALS": str(creds)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("docker run ") for line in lines), proc.stdout
    gpu_line = next(line for line in lines if ms[0].id in line)
    assert "--gpus 2" in gpu_line and "--cpus 4" in gpu_line and f"--memory {8 * 2**30}b" in gpu_line
    for line in lines:
        assert f"--label hpt.experiment={exp}" in line and "--label hpt.version=" in line
        assert f"--mount type=bind,source={data},target={data},readonly" in line
        assert f"--mount type=bind,source={creds},target=/var/run/secrets/hpt/google-credentials.json,readonly" in line
        assert f"STORAGE_EMULATOR_HOST=http://host.docker.internal:{port}" in line
        assert "--add-host host.docker.internal:host-gateway" in line
        assert "TOP-SECRET" not in line
        assert line.endswith(" hpt-trainer:latest")
    assert "--gpus" not in next(line for line in lines if ms[1].id in line)
    assert "no Docker daemon answers" in proc.stderr
    assert "this host has 0" in proc.stderr


def test_dry_run_lines_run_the_same_container_spec(tmp_path):
    """The dry-run line is rendered from the same spec submit uses: bash parses it back to the same values."""
    m = make_manifest(tmp_path, "bag-of-words", epochs=1, experiment=experiment(), image="img:1",
                      resources={"gpus": 0, "cpus": 1.5, "memory": "512M"})
    backend = DockerBackend.with_options(docker_client=object(), gpus_available=[], warm=False)
    sub = submission(m, str(tmp_path / "res"))
    spec = backend.spec(sub)
    line = backend.dry_run([sub])
    assert line.count("\n") == 1 and line.strip() == spec.command_line()
    assert line.startswith("docker run ")
    argv = subprocess.run(["bash", "-c", f"set -- {line[len('docker run '):]}\nprintf '%s\\0' \"$@\""],
                          capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    env = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-e" and "=" in argv[i + 1])
    assert env["HPT_MANIFEST"] == m.to_json()          # byte for byte, trailing newline included
    kwargs = spec.create_kwargs([])
    assert kwargs["environment"] == env
    assert kwargs["nano_cpus"] == 1_500_000_000 and kwargs["mem_limit"] == 512_000_000
    assert argv[argv.index("--cpus") + 1] == "1.5" and argv[argv.index("--memory") + 1] == "512000000b"
    assert argv[argv.index("--name") + 1] == kwargs["name"]
    assert argv[-1] == "img:1"


def test_memory_quantities_and_emulator_rewrite():
    assert memory_bytes("4Gi") == 4 * 2**30 and memory_bytes("512M") == 512 * 10**6
    assert memory_bytes("1.5Gi") == int(1.5 * 2**30) and memory_bytes("1048576") == 2**20
    with pytest.raises(UserError):
        memory_bytes("lots")
    assert rewrite_emulator_host("http://127.0.0.1:4443") == "http://host.docker.internal:4443"
    assert rewrite_emulator_host("localhost:9000") == "host.docker.internal:9000"
    assert rewrite_emulator_host("http://0.0.0.0:1/x") == "http://host.docker.internal:1/x"
    assert rewrite_emulator_host("http://gcs.example:4443") == "http://gcs.example:4443"


def test_gpu_shares_pack_onto_one_device_id(tmp_path, capsys):
    from fractions import Fraction

    from hpt.executor.backends.docker import LABEL_GPU_SHARE, DockerHandle

    quarter, half = Fraction(1, 4), Fraction(1, 2)
    backend = DockerBackend.with_options(docker_client=object(), gpus_available="0,1")
    assert [backend._take_gpus(quarter) for _ in range(4)] == [("0",)] * 4  # four quarter trials share GPU 0
    assert backend._take_gpus(1) == ("1",)                  # a whole-GPU trial still finds GPU 1 free
    assert backend._take_gpus(quarter) is None              # both full: the next quarter trial waits
    backend._free_gpus(DockerHandle("t", "e", "n", gpus=("0",), share=quarter))
    assert backend._take_gpus(half) is None                 # a quarter of GPU 0 is free, not a half
    assert backend._take_gpus(quarter) == ("0",)
    backend._free_gpus(DockerHandle("t", "e", "n", gpus=("1",)))
    assert backend._take_gpus(half) == ("1",)
    assert backend._take_gpus(quarter) == ("1",)            # shares of different sizes mix: 1/2 + 1/4 + 1/4
    assert backend._take_gpus(quarter) == ("1",) and backend._take_gpus(quarter) is None
    assert backend.slots.capacity(quarter) == 8 and backend.slots.capacity(Fraction(1)) == 2

    # what run() would create: one device id for the share, the share as a label (for adoption), --gpus 1
    m = make_manifest(tmp_path, "bag-of-words", epochs=1, experiment=experiment(), image="img:1",
                      resources={"gpus": 0.25, "cpus": 1, "memory": "1Gi"})
    spec = backend.spec(submission(m, str(tmp_path / "r")))
    assert spec.labels[LABEL_GPU_SHARE] == "1/4" and spec.resources.gpu_devices == 1
    assert len(spec.create_kwargs(("0",))["device_requests"][0].device_ids) == 1
    line = backend.dry_run([submission(m, str(tmp_path / "r"))])
    assert "--gpus 1 " in line and f"--label {LABEL_GPU_SHARE}=1/4" in line
    assert "shared by up to n" in capsys.readouterr().err


def test_an_adopted_share_keeps_its_room_on_the_device():
    from fractions import Fraction

    from hpt.executor.gpu_slots import GpuSlots

    slots = GpuSlots(["0"])
    slots.hold(["0"], Fraction(1, 2))          # a half-GPU trial left running by an earlier apply
    assert slots.take(Fraction(1, 2)) == ("0",) and slots.take(Fraction(1, 4)) is None
    assert slots.take(Fraction(1)) is None
    slots.give_back(["0"], Fraction(1, 2))
    slots.give_back(["0"], Fraction(1, 2))
    assert slots.take(Fraction(1)) == ("0",)


def test_gpus_are_never_given_to_two_trials_at_once(tmp_path):
    backend = DockerBackend.with_options(docker_client=object(), gpus_available="0,1,2")
    assert backend.gpu_pool == ["0", "1", "2"]
    first = backend._take_gpus(2)
    assert first == ("0", "1")
    assert backend._take_gpus(2) is None          # only GPU 2 is free: the trial waits
    second = backend._take_gpus(1)
    assert second == ("2",)
    from hpt.executor.backends.docker import DockerHandle

    backend._free_gpus(DockerHandle("t", "e", "n", gpus=first))
    assert backend._take_gpus(2) == ("0", "1")
    m = make_manifest(tmp_path, "bag-of-words", epochs=1, resources={"gpus": 4, "cpus": 1, "memory": "1Gi"})
    with pytest.raises(UserError, match="asks for 4 GPU"):
        backend.preflight([submission(m, str(tmp_path / "r"))])


@pytest.mark.gpu
def test_gpu_check_each_trial_sees_exactly_its_own_gpu():
    """bench/gpu_check.py on a GPU machine (CUDA image from `hpt image build`); skips without GPUs."""
    if not detect_gpus():
        pytest.skip("no NVIDIA GPU on this host")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py")], capture_output=True, text=True,
                          timeout=1800)
    if proc.stdout.startswith("SKIP:"):
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.docker
def test_image_build_offline_is_a_no_op_when_up_to_date(docker_client, trainer_image):
    proc = hpt("image", "build", "--offline")
    assert proc.returncode == 0, proc.stderr
    assert "is up to date" in proc.stderr or "built hpt-trainer:latest" in proc.stderr
    proc = hpt("image", "build", "--offline")        # nothing changed in between: nothing to do
    assert proc.returncode == 0 and "is up to date" in proc.stderr, proc.stderr
    attrs = docker_client.images.get(IMAGE).attrs["Config"]
    assert attrs["Labels"]["hpt.source-hash"] and attrs["Entrypoint"] == ["hpt-trial"]


# --- warm starts: slot containers (--warm) ---------------------------------------------------------
class ContainerWatch:
    """Every container of an experiment seen while it runs (a thread lists them every 0.2 s)."""

    def __init__(self, client, exp: str):
        import threading

        self.client, self.exp, self.names, self.slots = client, exp, set(), set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                for c in containers(self.client, self.exp):
                    self.names.add(c.name)
                    if (c.labels or {}).get(LABEL_SLOT):
                        self.slots.add(c.name)
            except Exception:  # noqa: BLE001  (a container removed while listed)
                pass
            self._stop.wait(0.2)

    def stop(self) -> "ContainerWatch":
        self._stop.set()
        self._thread.join()
        return self


def apply_warm_watched(client, exp: str, plan_dir: Path, results: Path, *extra: str):
    """`hpt apply --backend docker --warm --parallel 1` to its end, every container it made watched."""
    watch = ContainerWatch(client, exp)
    try:
        proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(results), "--parallel", "1",
                   "--warm", *extra)
    finally:
        watch.stop()
    return proc, watch


@pytest.mark.docker
def test_warm_trials_share_one_slot_container_survive_a_crash_and_match_a_container_per_trial(
        docker_client, trainer_image, shared_dataset, tmp_path):
    """`--warm --parallel 1`: a trial that crashes, then two good ones, all in ONE slot container (the crash
    does not take it down); rows, logs and cleanup as without --warm; a warm trial's metrics equal a
    container-per-trial trial's bit for bit."""
    exp = experiment()
    # dates the data do not cover: the trainer fails (exit 2) in a slot of the same kind as the good trials'
    broken = manifest(shared_dataset, exp, train=("2030-01-01", "2030-02-01"), validation=("2030-02-01", "2030-03-01"))
    good = [manifest(shared_dataset, exp, seed=s) for s in range(2)]
    plan_dir = write_plan(tmp_path / "plan", [broken, *good])
    results = tmp_path / "results"
    proc, watch = apply_warm_watched(docker_client, exp, plan_dir, results, "-f", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr      # the trial without data failed
    assert len(watch.slots) == 1 and watch.names == watch.slots, watch.names   # one slot container, no other
    got = rows(str(results))
    assert got[broken.id]["status"] == "failed" and got[broken.id]["reason"], got[broken.id]
    for m in good:
        assert got[m.id]["status"] == "done", got[m.id]
        assert Path(got[m.id]["model_uri"]).is_dir()
        log = (results / "logs" / f"{m.id}.log").read_text()
        assert log.count("attempt 1") == 1 and log.count("epoch 1/1") == 1, log
    assert containers(docker_client, exp) == []                   # the idle slot went with the apply
    assert not list((plan_dir / ".hpt" / "docker").rglob("*.request.json"))

    # The same first good trial, one container of its own: the same numbers to the last bit.
    cold = tmp_path / "results-cold"
    proc = hpt("apply", str(write_plan(tmp_path / "plan-cold", [good[0]])), "--backend", "docker", "--results",
               str(cold))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for column in ("mse", "loss", "train_mse", "best_epoch", "device"):
        assert got[good[0].id][column] == rows(str(cold))[good[0].id][column], column


@pytest.mark.docker
def test_warm_reapply_after_kill_9_adopts_the_running_trial_and_its_slot(docker_client, trainer_image,
                                                                         shared_dataset, tmp_path):
    """kill -9 of `hpt apply --warm` mid-trial: the slot container and its trial keep running; the re-apply
    adopts the trial (no second start: its trainer output appears once) and runs the next trial in the same
    slot container. One row per trial, none lost."""
    exp = experiment()
    long = manifest(shared_dataset, exp, epochs=400, early_stopping_patience=500)  # ~8 s: outlives the kill
    short = manifest(shared_dataset, exp, seed=1)
    plan_dir = write_plan(tmp_path / "plan", [long, short])
    results = tmp_path / "results"
    args = ["apply", str(plan_dir), "--backend", "docker", "--results", str(results), "--parallel", "1", "--warm",
            "-f", "json"]
    watch = ContainerWatch(docker_client, exp)
    first = subprocess.Popen([sys.executable, "-m", "hpt.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        slots = plan_dir / ".hpt" / "docker" / exp / store_id(open_store(str(results)).uri)  # where adopt looks
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(slots.glob(f"w*/{long.id}.pid")):
            time.sleep(0.05)
        assert list(slots.glob(f"w*/{long.id}.pid")), "the trial never started"
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    assert [c.status for c in containers(docker_client, exp)] == ["running"], "the slot did not outlive apply"
    try:
        proc = hpt("apply", *args[1:])
    finally:
        watch.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evs = events(proc.stdout)
    assert [e["trial_id"] for e in evs if e["event"] == "trial-adopted"] == [long.id], evs
    assert [e["trial_id"] for e in evs if e["event"] == "trial-started"] == [short.id]
    assert len(watch.slots) == 1 and watch.names == watch.slots, watch.names
    assert open_store(str(results)).list("rows/") == sorted([row_key(long.id), row_key(short.id)])
    assert {t: r["status"] for t, r in rows(str(results)).items()} == {long.id: "done", short.id: "done"}
    log = (results / "logs" / f"{long.id}.log").read_text()
    assert log.count("epoch 1/400") == 1, log                     # the trainer started once
    assert containers(docker_client, exp) == []


@pytest.mark.docker
def test_warm_cancel_stops_the_trial_not_the_slot_and_timeout_is_recorded(docker_client, trainer_image,
                                                                          shared_dataset, tmp_path):
    exp = experiment()
    long = manifest(shared_dataset, exp, epochs=500, early_stopping_patience=500)
    short = manifest(shared_dataset, exp, seed=1)
    results = open_store(str(tmp_path / "results")).uri
    backend = DockerBackend.with_options(docker_client=docker_client, warm=True, state_dir=tmp_path / "state")
    subs = [submission(long, results), submission(short, results)]
    backend.preflight(subs)
    try:
        first = backend.submit(subs[0])
        deadline = time.monotonic() + 120
        while not (backend.poll(first).phase == Phase.RUNNING and "epoch 1/500" in backend.logs(first)):
            assert time.monotonic() < deadline, backend.logs(first)   # training, not just started
            time.sleep(0.1)
        backend.cancel(first)
        status = backend.poll(first)
        assert status.phase == Phase.FAILED and status.reason.startswith("cancelled"), status
        backend.release(first)
        second = backend.submit(subs[1])
        assert second.container_id == first.container_id          # the same slot container runs the next trial
        deadline = time.monotonic() + 120
        while not (status := backend.poll(second)).finished:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert status.phase == Phase.SUCCEEDED, backend.logs(second)
        backend.release(second)
    finally:
        backend.close()
    assert containers(docker_client, exp) == []

    # Through `hpt apply --timeout`: the loop cancels it; the row says why.
    plan_dir = write_plan(tmp_path / "plan", [long])
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(tmp_path / "r2"), "--warm",
               "--timeout", "3")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = rows(str(tmp_path / "r2"))[long.id]
    assert row["status"] == "failed" and row["reason"].startswith("timed out after 3 s"), row
    assert containers(docker_client, exp) == []


@pytest.mark.docker
def test_warm_trial_killed_for_memory_says_so_and_the_slot_runs_the_next(docker_client, trainer_image, shared_dataset,
                                                                         tmp_path):
    """A trial past its memory limit in a slot container: the kernel kills the trial (the worker's child is
    its first pick), the row says OOM-killed with the limit (the cgroup's oom_kill counter), and the same
    slot container runs the next trial."""
    exp = experiment()
    limits = {"gpus": 0, "cpus": 1, "memory": "400Mi"}   # the worker takes ~190 MiB of it, a small trial ~100 more
    hungry = manifest(shared_dataset, exp, resources=limits, vocab_size=100_000, embedding_dim=1024, hidden_size=4096,
                      batch_size=8192)
    good = manifest(shared_dataset, exp, seed=1, resources=limits)
    plan_dir = write_plan(tmp_path / "plan", [hungry, good])
    results = tmp_path / "results"
    proc, watch = apply_warm_watched(docker_client, exp, plan_dir, results, "--retries", "0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = rows(str(results))
    assert got[hungry.id]["status"] == "failed"
    assert got[hungry.id]["reason"].startswith("OOM-killed (memory limit 400Mi)"), got[hungry.id]["reason"]
    assert got[good.id]["status"] == "done", got[good.id]
    assert len(watch.slots) == 1, watch.names
    assert containers(docker_client, exp) == []


def test_warm_worker_folder_protocol_on_this_host(tmp_path):
    """A slot container's worker, run here without Docker: one trial at a time in request order, cancel by
    file (SIGTERM to the child), exit codes and logs by file, and it exits by itself once idle and unwatched."""
    from hpt.executor.backends.docker.folder import Slot

    folder = tmp_path / "slot"
    folder.mkdir()
    script = tmp_path / "trial.py"
    script.write_text("import os, sys, time\nprint('manifest', os.environ['HPT_MANIFEST'], flush=True)\n"
                      "if os.environ['HPT_MANIFEST'] == 'long':\n    time.sleep(120)\nsys.exit(3)\n")
    slot = Slot("slot", "", folder, "")
    slot.beat()
    worker = subprocess.Popen([sys.executable, "-m", "hpt.trainer.warm", "--folder", str(folder)],
                              env={**os.environ, "HPT_WARM_IDLE_S": "2"})
    try:
        slot.request("t-long", 1, {"HPT_MANIFEST": "long"}, [sys.executable, str(script)])
        slot.request("t-short", 1, {"HPT_MANIFEST": "short"}, [sys.executable, str(script)])

        def wait(what, timeout: float = 120):
            deadline = time.monotonic() + timeout
            while not what():
                assert time.monotonic() < deadline and worker.poll() is None, "the worker stopped answering"
                time.sleep(0.05)

        wait(lambda: "manifest long" in slot.log("t-long"))
        assert not slot.started("t-short") and slot.open_trials() == ["t-long", "t-short"]   # one at a time
        slot.cancel("t-long")
        wait(lambda: slot.exit("t-long") is not None)
        assert slot.exit("t-long")["code"] == -signal.SIGTERM
        wait(lambda: slot.exit("t-short") is not None)
        assert slot.exit("t-short")["code"] == 3 and slot.log("t-short").strip() == "manifest short"
        assert slot.open_trials() == []
        assert worker.wait(timeout=60) == 0       # idle, and nobody touches its heartbeat: it ends
    finally:
        if worker.poll() is None:
            worker.kill()


def test_warm_dry_run_prints_the_slot_container_and_each_request(tmp_path):
    exp = experiment()
    ms = [make_manifest(tmp_path, "bag-of-words", epochs=1, seed=s, experiment=exp, image="img:1",
                        resources={"gpus": 0, "cpus": 1, "memory": "1Gi"}) for s in range(2)]
    plan_dir = write_plan(tmp_path / "plan", ms)
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(tmp_path / "r"), "--dry-run", "--warm",
               env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3, proc.stdout                             # one kind of slot, two requests
    folder = plan_dir.resolve() / ".hpt" / "docker" / exp / store_id(str(tmp_path / "r")) / "w1"
    assert lines[0].startswith(f"mkdir -p {folder} && docker run ")
    assert lines[0].endswith(f" --entrypoint python3 img:1 -m hpt.trainer.warm --folder {folder}")
    assert f"--mount type=bind,source={folder},target={folder}" in lines[0] and "--memory 1073741824b" in lines[0]
    assert f"--label hpt.slot={folder}" in lines[0] and "HPT_MANIFEST" not in lines[0]
    for m, line in zip(ms, lines[1:]):
        argv = subprocess.run(["bash", "-c", f"set -- {line.split(' > ')[0][len('printf '):]}\nprintf '%s\\0' \"$@\""],
                              capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
        request = json.loads(argv[1])
        assert request["env"]["HPT_MANIFEST"] == m.to_json() and request["command"] == ["hpt-trial"]
        assert line.endswith(f" > {folder}/{m.id}.request.json")


def test_the_docker_default_dry_run_puts_cpu_trials_in_slots_and_a_gpu_trial_in_its_own_container(tmp_path):
    exp = experiment()
    cpu, gpu = (make_manifest(tmp_path, "bag-of-words", epochs=1, seed=s, experiment=exp, image="img:1",
                              resources={"gpus": s, "cpus": 1, "memory": "1Gi"}) for s in (0, 1))
    plan_dir = write_plan(tmp_path / "plan", [cpu, gpu])
    proc = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(tmp_path / "r"), "--dry-run",
               env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "HPT_GPUS": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3, proc.stdout          # the slot container, the CPU trial's request, the GPU trial's run
    assert " -m hpt.trainer.warm --folder " in lines[0] and f"{cpu.id}.request.json" in lines[1]
    assert lines[2].startswith("docker run ") and gpu.id in lines[2] and "--gpus 1" in lines[2]
    assert "warm trials run in one slot container" in proc.stderr
    no_warm = hpt("apply", str(plan_dir), "--backend", "docker", "--results", str(tmp_path / "r"), "--dry-run",
                  "--no-warm", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "HPT_GPUS": ""})
    assert [line.startswith("docker run ") for line in no_warm.stdout.strip().splitlines()] == [True, True]


def test_warm_is_refused_for_k8s(tmp_path):
    plan_dir = write_plan(tmp_path / "plan", [make_manifest(tmp_path, "bag-of-words", epochs=1)])
    proc = hpt("apply", str(plan_dir), "--backend", "k8s", "--warm", "--dry-run")
    assert proc.returncode == 2 and "--warm applies to --backend local/docker only" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_warm_exit_reasons():
    """How a slot's worker reports a child's end, as the row says it."""
    from hpt.executor.backends.docker import DockerHandle
    from hpt.executor.backends.docker.slots import trial_status as say

    handle = DockerHandle("t", "e", "n", memory="64Mi", warm=True)
    assert say(handle, {"code": 0}).phase == Phase.SUCCEEDED
    assert say(handle, {"code": 3}).reason == "exit code 3"
    oom = say(handle, {"code": -9, "oom_killed": True})
    assert oom.reason == "OOM-killed (memory limit 64Mi)" and oom.exit_code == 137 and not oom.transient
    maybe = say(handle, {"code": -9, "oom_killed": None})
    assert maybe.reason == "killed (SIGKILL), maybe out of memory (memory limit 64Mi)" and maybe.transient
    killed = say(handle, {"code": -15, "oom_killed": False})
    assert killed.reason == "killed (SIGTERM, exit code 143)" and killed.transient
    handle.cancelled = True
    assert say(handle, {"code": -15, "oom_killed": False}).reason.startswith("cancelled")
