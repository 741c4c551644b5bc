"""The `hubpulse` command: one typer app assembled from the command modules in hubpulse.commands."""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="hubpulse",
    help="Watch the Hugging Face Hub, spot models about to take off, deploy and monitor them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)

# Each module defines `register(app)`, adding its commands or command group.
_COMMAND_MODULES: tuple[str, ...] = (
    "hubpulse.commands.platform",  # up, status
    "hubpulse.commands.hub",  # hub serve
    "hubpulse.commands.pipeline",  # ingest, import
    "hubpulse.commands.model",  # train, backtest, promote, rollback, models
    "hubpulse.commands.bench",  # bench pipeline, bench search
    "hubpulse.commands.dlq",  # dlq list, dlq replay
    "hubpulse.commands.migrate",  # migrate
    "hubpulse.commands.observability",  # observability generate
)


def _print_version(value: bool) -> None:
    if value:
        from hubpulse_common import __version__

        typer.echo(f"hubpulse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Watch the Hugging Face Hub, spot models about to take off, deploy and monitor them."""


for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Entry point: user-facing errors become one clear line and a non-zero exit, never a traceback."""
    from hubpulse_common.errors import UserFacingError

    try:
        app()
    except UserFacingError as exc:
        # the message quotes user input (a history cell, a URL): print it as text, never as rich markup
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
