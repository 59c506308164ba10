"""`hpt serve`: the report as a live page, kept current while a run's rows land.

One code path with `hpt report`: the page is report.render's, over the same table (the caller's loader:
hpt.api.comparable). The server (stdlib http.server, read-only: GET only) answers

- `/`            the page, rendered again only when the store changed since the last rendering;
- `/state.json`  {"version": ..., "rows": N}: the version is a digest of the store's row listing and its
                 recorded rounds, cheap to compute (a listing, no row read).

The page polls /state.json and, when the version moved, fetches `/` and swaps its content in (no reload).
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from hpt.results.report import render, render_waiting
from hpt.results.table import Objective, ResultTable
from hpt.schemas.errors import UserError
from hpt.store import ROUNDS, Store, iter_row_ids

DEFAULT_INTERVAL_S = 3.0


@dataclass
class LivePage:
    store: Store
    objective: Objective
    load: Callable[[], ResultTable]           # the table the page shows (hpt.api.comparable over the store)
    top: int = 8
    curves: bool = True
    interval_s: float = DEFAULT_INTERVAL_S
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _page: tuple[str, str] | None = field(default=None, repr=False)   # (version, html)

    def state(self) -> dict[str, Any]:
        try:
            ids = sorted(iter_row_ids(self.store))
            rounds = [self.store.get(key) for key in sorted(self.store.list(ROUNDS))]
        except UserError:
            ids, rounds = [], []
        digest = hashlib.sha256("\n".join(ids).encode())
        for doc in rounds:
            digest.update(hashlib.sha256(doc).digest())
        return {"version": digest.hexdigest()[:16], "rows": len(ids)}

    def html(self) -> str:
        with self._lock:   # one rendering at a time; a page of the current version is reused
            version = self.state()["version"]
            if self._page is None or self._page[0] != version:
                self._page = (version, self._render(version))
            return self._page[1]

    def _render(self, version: str) -> str:
        live = {"version": version, "interval_ms": int(self.interval_s * 1000)}
        try:
            table = self.load()
        except UserError as err:   # no row yet, or the store is not there yet: the page waits for it
            return render_waiting(self.store.uri, f"Waiting for rows: {err}", live)
        return render(table, self.objective, top=self.top, curves=self.curves, store=self.store, live=live)


def make_server(page: LivePage, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hpt-serve"

        def do_GET(self) -> None:  # noqa: N802 — http.server's name
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(page.html().encode("utf-8"), "text/html; charset=utf-8")
            elif path == "/state.json":
                self._send(json.dumps(page.state()).encode(), "application/json")
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD   # read-only

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — quiet: no line per poll
            return

    return ThreadingHTTPServer((host, port), Handler)
