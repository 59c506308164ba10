"""`hpt index STORE [--rebuild]`: how the row index stands against rows/, and a rebuild from every row file.

The index (hpt.store.index) only makes readers faster; rows/ decides. `hpt apply` keeps it up to date;
a store filled by other means (a copy, rows written by hand, an old hpt) is read correctly without it,
and `--rebuild` makes it fast again.
"""
from __future__ import annotations

import json
from typing import Optional

import typer

from hpt.commands.common import Format, chosen_format, console, format_option, output_alias, user_errors


def register(app: typer.Typer) -> None:
    @app.command("index")
    @user_errors
    def index_cmd(
        uri: str = typer.Argument(..., help="The results store: a folder, file://PATH or gs://BUCKET/PREFIX."),
        rebuild: bool = typer.Option(False, "--rebuild", help="Read every row file and write the index anew (one segment)."),
        fmt: Format = format_option(),
        output: Optional[str] = output_alias(),
    ) -> None:
        """The row index of a store: rows indexed, rows it lacks, entries it holds for no row; --rebuild."""
        from hpt.schemas.errors import UserError
        from hpt.store import open_store
        from hpt.store.index import describe, rebuild as rebuild_index

        fmt = chosen_format(fmt, output)
        store = open_store(uri)
        root = getattr(store, "root", None)
        if root is not None and not root.exists():
            raise UserError("no such results folder", where=str(root), hint="pass the folder `hpt apply --results` wrote to")
        doc: dict = {"store": store.uri}
        if rebuild:
            indexed, dropped = rebuild_index(store)
            doc["rebuilt"] = {"indexed": indexed, "segments_dropped": dropped}
        doc |= describe(store)
        if fmt is Format.json:
            typer.echo(json.dumps(doc, indent=1))
            return
        if rebuild:
            console.print(f"rebuilt: {indexed} row(s) in one segment, {dropped} older segment(s) dropped", highlight=False)
        console.print(f"{store.uri}: {doc['rows']} row(s), {doc['indexed']} indexed, {doc['lacking']} read from their "
                      f"files; {doc['segments']} segment(s)"
                      + (f", {doc['unreadable_segments']} unreadable (ignored)" if doc["unreadable_segments"] else "")
                      + (f"; {doc['entries_without_row']} entries without a row file (ignored)" if doc["entries_without_row"] else "")
                      + (f"; {doc['entries_for_older_file']} for an older row file (ignored)" if doc["entries_for_older_file"] else ""),
                      highlight=False, soft_wrap=True)
