"""The `hpt` command line. Each command lives in hpt/commands/<name>.py and registers itself here."""
from __future__ import annotations

import sys

import typer

from hpt.commands import apply, compile, data, delete, image, index, results, serve
from hpt.commands.common import fail
from hpt.schemas import UserError, __version__

app = typer.Typer(
    name="hpt",
    help="Hyperparameter tuning for PyTorch models on time-stamped data: compile a spec into a plan, apply it, read the results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hpt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """hpt: compile → apply → results."""


for module in (compile, data, apply, image, delete, results, index, serve):
    module.register(app)


def main() -> None:
    try:
        app()
    except UserError as err:  # a command that forgot @user_errors still exits 2 without a traceback
        try:
            raise fail(err)
        except typer.Exit as exit_:
            sys.exit(exit_.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
