"""The GCS results store against a real fake-gcs-server: create-only rows, listing, trees, and how it
behaves when the service misbehaves — transient 503s are retried until the write lands, permanent
errors (403, a missing bucket) end at once in a UserError instead of retrying forever."""
from __future__ import annotations

import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hpt.store.gcs import GCSStore
from hpt.store import AlreadyExists, iter_row_ids, open_store, read_text, store_id, store_uri
from hpt.schemas.errors import UserError


class FlakyProxy:
    """An HTTP proxy in front of fake-gcs-server: the first `failures` requests get `status`, the rest are forwarded."""

    def __init__(self, upstream: str, failures: int, status: int = 503):
        self.upstream = urllib.parse.urlparse(upstream)
        self.failures = failures
        self.status = status
        self.requests: list[str] = []
        self.failed = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append(f"{self.command} {self.path}")
                if proxy.failed < proxy.failures:
                    proxy.failed += 1
                    payload = b'{"error": {"code": %d, "message": "injected by the test proxy"}}' % proxy.status
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # clients dropping keep-alive connections are not news

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FlakyProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_store_uri_spells_a_uri_as_open_store_does_without_opening_it(gcs_bucket):
    """What a Job's or container's store label digests: the same for every spelling of one store."""
    for uri in (gcs_bucket, gcs_bucket + "/", gcs_bucket + "/a/b/", gcs_bucket + "//a/b"):
        assert store_uri(uri) == open_store(uri).uri
    assert store_id(gcs_bucket + "/a/b/") == store_id(gcs_bucket + "//a/b") != store_id(gcs_bucket + "/a")


def test_put_once_is_create_only(gcs_bucket):
    store = open_store(f"{gcs_bucket}/run1")
    assert isinstance(store, GCSStore)
    store.put_once("rows/t-1.csv", b"first")
    with pytest.raises(AlreadyExists):
        store.put_once("rows/t-1.csv", b"second")
    assert store.get("rows/t-1.csv") == b"first"
    assert store.exists("rows/t-1.csv") and not store.exists("rows/t-2.csv")


def test_put_get_list_and_trees(gcs_bucket, tmp_path: Path):
    store = open_store(f"{gcs_bucket}/a/b")
    store.put("results.csv", b"v1")
    store.put("results.csv", b"v2")  # put replaces
    assert store.get("results.csv") == b"v2"
    store.put_once("rows/t-b.csv", b"b")
    store.put_once("rows/t-a.csv", b"a")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.pt").write_bytes(b"\x00weights")
    (src / "sub" / "events").write_text("curve")
    store.put_tree("models/t-a", src)
    assert store.list("rows/") == ["rows/t-a.csv", "rows/t-b.csv"]
    assert list(iter_row_ids(store)) == ["t-a", "t-b"]
    assert store.list("models/") == ["models/t-a/model.pt", "models/t-a/sub/events"]
    # A sibling prefix of the store is invisible: keys are relative to gs://bucket/a/b.
    open_store(f"{gcs_bucket}/a").put("other", b"x")
    assert "other" not in store.list()
    out = tmp_path / "out"
    store.get_tree("models/t-a", out)
    assert (out / "model.pt").read_bytes() == b"\x00weights" and (out / "sub" / "events").read_text() == "curve"
    with pytest.raises(KeyError):
        store.get("rows/missing.csv")
    assert read_text(f"{gcs_bucket}/a/b/rows/t-a.csv") == "a"
    assert store.url("rows/t-a.csv") == f"{gcs_bucket}/a/b/rows/t-a.csv"


def test_transient_503s_are_retried_until_the_row_lands(gcs_bucket, gcs_server, monkeypatch):
    with FlakyProxy(gcs_server, failures=2, status=503) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        store = open_store(f"{gcs_bucket}/flaky")
        store.put_once("rows/t-x.csv", b"row")
        assert proxy.failed == 2 and len(proxy.requests) >= 3  # two refused, then forwarded
        proxy.failures += 2
        assert store.get("rows/t-x.csv") == b"row"              # reads retry too
        with pytest.raises(AlreadyExists):                         # and create-only still holds
            store.put_once("rows/t-x.csv", b"again")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    assert open_store(f"{gcs_bucket}/flaky").get("rows/t-x.csv") == b"row"


def test_permanent_403_is_not_retried(gcs_bucket, gcs_server, monkeypatch):
    with FlakyProxy(gcs_server, failures=10**6, status=403) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        store = open_store(f"{gcs_bucket}/denied")
        with pytest.raises(UserError, match="permission denied"):
            store.put_once("rows/t-x.csv", b"row")
        # One upload attempt, no retries (the client may add one metadata GET of its own).
        assert len([r for r in proxy.requests if r.startswith("POST /upload/")]) == 1


def test_missing_bucket_is_a_user_error(gcs_server):
    store = open_store("gs://hpt-no-such-bucket-4711/x")
    with pytest.raises(UserError, match="bucket does not exist"):
        store.put_once("rows/t-x.csv", b"row")
    with pytest.raises(UserError, match="bucket does not exist"):
        store.list("rows/")
