"""The `hpt` command line. Each command lives in hpt/commands/<module>.py and registers itself there;
COMMANDS says which module holds which command, so a run imports only its own command's module (every
module at once cost each command ~0.5 s of imports; `hpt --help` still loads them all to list them)."""
from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

from hpt.schemas import UserError, __version__

# command name → the module of hpt/commands that registers it, in the order `hpt --help` lists them
# (groups of subcommands last, as typer lists them).
COMMANDS = {"compile": "compile", "schema": "compile", "architectures": "compile", "apply": "apply", "status": "apply",
            "delete": "delete", "results": "results", "fidelity": "results", "report": "results", "index": "index",
            "serve": "serve", "data": "data", "image": "image"}


class LazyCommands(TyperGroup):
    """The root group: a command's module is imported (and its commands built) when the command is named."""

    def list_commands(self, ctx):  # noqa: ANN001, ANN201
        return list(dict.fromkeys([*COMMANDS, *super().list_commands(ctx)]))

    def get_command(self, ctx, cmd_name):  # noqa: ANN001, ANN201
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self._load(COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx, args):  # noqa: ANN001, ANN201
        if args and args[0] not in COMMANDS:   # a typo: every name known, for "Did you mean ...?"
            for module in dict.fromkeys(COMMANDS.values()):
                self._load(module)
        return super().resolve_command(ctx, args)

    def _load(self, module: str) -> None:
        holder = typer.Typer(rich_markup_mode="rich", add_completion=False)
        importlib.import_module(f"hpt.commands.{module}").register(holder)
        for name, command in typer.main.get_group(holder).commands.items():
            self.commands.setdefault(name, command)

app = typer.Typer(
    name="hpt",
    help="Hyperparameter tuning for PyTorch models on time-stamped data: compile a spec into a plan, apply it, read the results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=LazyCommands,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hpt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """hpt: compile → apply → results."""


def main() -> None:
    try:
        app()
    except UserError as err:  # a command that forgot @user_errors still exits 2 without a traceback
        from hpt.commands.common import fail

        try:
            raise fail(err)
        except typer.Exit as exit_:
            sys.exit(exit_.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
