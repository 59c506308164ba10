"""What every command shares: the consoles, the user-error contract (one line, exit 2) and the
one output convention, `--format table|json` (plus `csv` where the result is one table).

Both consoles read no markup: specs, paths, store URIs and failure reasons are user text, and a
`[/x]` in any of them must print as written, never as a rich tag (or crash with MarkupError). Styled
output is built from `rich.text.Text` with explicit styles instead."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from enum import Enum
from typing import Any, Callable, Iterator, Optional, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from hpt.schemas.errors import UserError

F = TypeVar("F", bound=Callable)

console = Console(markup=False, highlight=False)                  # results, tables (stdout)
err_console = Console(stderr=True, markup=False, highlight=False)  # messages, progress (stderr)

PROGRESS_EVERY_ENV = "HPT_PROGRESS_EVERY_S"   # seconds between summary lines where there is no terminal


def plain_progress() -> bool:
    """No terminal on stderr (a Jenkins console, nohup, `| tee`, a pod's log): progress as timestamped lines,
    because a bar or spinner there shows nothing until the command ends."""
    return not err_console.is_terminal


def progress_every_s() -> float:
    from hpt.executor.events import SUMMARY_EVERY_S

    text = os.environ.get(PROGRESS_EVERY_ENV, "")
    try:
        value = float(text) if text else SUMMARY_EVERY_S
    except ValueError:
        raise UserError(f"{text!r} is not a number of seconds", where=PROGRESS_EVERY_ENV) from None
    if not value > 0 or value == float("inf"):
        raise UserError(f"{text!r} is not a positive number of seconds", where=PROGRESS_EVERY_ENV)
    return value


def say(text: str) -> None:
    """One timestamped progress line on stderr, flushed at once (where there is no terminal)."""
    from hpt.executor.events import timestamped

    sys.stderr.write(timestamped(one_line(text)) + "\n")
    sys.stderr.flush()


def note(text: str) -> None:
    """A step of a long command on stderr: as printed on a terminal, timestamped where there is none."""
    if plain_progress():
        say(text)
    else:
        err_console.print(text, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_status(first: str) -> Iterator[Callable[[str], None]]:
    """A long step's progress: a spinner whose text each message replaces on a terminal; elsewhere each
    message as a timestamped line (the first one only once something happens, so an early error stays the
    only line)."""
    if not plain_progress():
        with err_console.status(first) as status:
            yield lambda message: status.update(Text(message))
        return
    yield say


EXIT_OK = 0
EXIT_TRIALS_FAILED = 1
EXIT_USER_ERROR = 2


# Options that only some backends take (`hpt apply`, `hpt delete`); each is passed to the backend's constructor
# as a keyword.
BACKEND_OPTIONS = {"context": ("k8s",), "namespace": ("k8s",), "kubeconfig": ("k8s",), "cancel_on_exit": ("k8s",),
                   "warm": ("local", "docker")}


def backend_options(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line, each refused on a backend that does not take it."""
    options: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            continue
        if name not in BACKEND_OPTIONS[key]:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} applies to --backend {'/'.join(BACKEND_OPTIONS[key])} only", where=flag)
        options[key] = value
    return options


class Format(str, Enum):
    """What a command prints on stdout: `table` for people (rich tables, a progress bar on stderr), `json` for machines."""
    table = "table"
    json = "json"


class TableFormat(str, Enum):
    """The formats of a command whose result is one table: also `csv`."""
    table = "table"
    csv = "csv"
    json = "json"


# A table for people lists everything up to this many lines; past it, `hpt status` and `hpt results`
# print a summary (counts, the best SUMMARY_TOP, failures grouped by reason) unless --all asks for all.
SUMMARY_AT = 200
SUMMARY_TOP = 20


def all_option() -> Any:
    return typer.Option(False, "--all", help=f"List every row in the table, however many (past {SUMMARY_AT} "
                                            f"rows the table is summarised: counts, the best {SUMMARY_TOP}, failures by reason).")


def format_option(default: Format | TableFormat = Format.table, help: str = "table (for people) or json (for machines).") -> Any:
    return typer.Option(default, "--format", "-f", help=help)


def output_alias(*short: str) -> Any:
    """The old spelling, `--output text|table|json`: hidden and deprecated, so scripts written before
    `--format` keep working (`text` means `table`)."""
    return typer.Option(None, "--output", *short, hidden=True)


def chosen_format(fmt: Format | TableFormat, output: Optional[str]) -> Any:
    """`--format`, or the deprecated `--output` when that one was given (with a note on stderr)."""
    if output is None:
        return fmt
    err_console.print("note: --output is deprecated; write --format", highlight=False)
    kind = type(fmt)
    try:
        return kind("table" if output == "text" else output)
    except ValueError:
        raise UserError(f"unknown format {output!r}", where="--output",
                        hint=f"--format {'|'.join(f.value for f in kind)}") from None


MAX_MESSAGE = 1000   # characters of one error line; a message quoting a 100 kB key is cut in the middle


def fail(err: UserError) -> typer.Exit:
    for one in err.each():  # a spec's every problem, one line each
        err_console.print(styled(("error:", "bold red"), " ", one_line(str(one))), soft_wrap=True)
    return typer.Exit(EXIT_USER_ERROR)


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """User text inside a message, as one visible line: line breaks and other invisible characters (a key
    "a\\nb", U+2028, U+0085) escaped as in a Python string, and the middle of an overlong text cut."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > limit:
        text = f"{text[:limit // 2]} … {text[-limit // 2:]}"
    return text


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain text with styled pieces: `styled(("error:", "bold red"), " ", message)`; nothing is parsed."""
    return Text.assemble(*parts)


def user_errors(fn: F) -> F:
    """Turn a UserError raised by a command into one message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            raise fail(err) from None

    return wrapper  # type: ignore[return-value]
