"""What every command shares: the stderr console and the user-error contract (one line, exit 2)."""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import typer
from rich.console import Console

from hpt.schemas.errors import UserError

F = TypeVar("F", bound=Callable)

console = Console()                     # results, tables (stdout)
err_console = Console(stderr=True)      # messages, progress (stderr)

EXIT_OK = 0
EXIT_TRIALS_FAILED = 1
EXIT_USER_ERROR = 2


def fail(err: UserError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USER_ERROR)


def user_errors(fn: F) -> F:
    """Turn a UserError raised by a command into one message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            raise fail(err) from None

    return wrapper  # type: ignore[return-value]
