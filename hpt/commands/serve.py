"""`hpt serve STORE`: the report as a live page (hpt.results.live), updating as rows land."""
from __future__ import annotations

from typing import Optional

import typer

from hpt.commands.common import err_console, user_errors
from hpt.schemas.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @user_errors
    def serve_cmd(
        uri: str = typer.Argument(..., help="The results store: a folder, file://PATH or gs://BUCKET/PREFIX."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
        port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free one; the URL is printed)."),
        objective: Optional[str] = typer.Option(None, "--objective", help="Metric to compare by (default mse)."),
        top: int = typer.Option(8, "--top", min=1, help="Configs drawn in the per-range and learning-curve plots."),
        curves: bool = typer.Option(True, "--curves/--no-curves", help="Read learning curves from the TensorBoard logs."),
        interval: float = typer.Option(3.0, "--interval", min=0.2, max=3600, help="Seconds between the page's checks for new rows."),
    ) -> None:
        """A live page of a run: progress, best so far, the configs and their significance, curves, failures.

        The same page as `hpt report`, kept current as rows land (no reload); read-only. Ctrl-C stops it."""
        from hpt import api
        from hpt.results.live import LivePage, make_server
        from hpt.results.table import objective as make_objective
        from hpt.store import open_store

        obj = make_objective(objective)
        store = open_store(uri)
        page = LivePage(store=store, objective=obj, load=lambda: api.comparable(store.uri), top=top, curves=curves,
                        interval_s=interval)
        try:
            server = make_server(page, host, port)
        except OSError as err:
            raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}", where="--port",
                            hint="another port (--port), or 0 for any free one") from None
        bound_host, bound_port = server.server_address[:2]
        err_console.print(f"serving {store.uri} at http://{bound_host}:{bound_port}/ (read-only; Ctrl-C stops)",
                          highlight=False, soft_wrap=True)
        try:
            server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
