"""The ``rait`` command line: thin typer commands over the library functions."""

from __future__ import annotations

import sys

import typer

from rait.commands import build, data, distill, evaluation, experiment, predict, serve, train
from rait.console import escape, make_console
from rait.errors import RaitError

app = typer.Typer(
    name="rait",
    help="Retrieval-Augmented Instruction Tuning (RA-IT) for open named entity recognition.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say "[default: ...]" literally
)


@app.callback()
def _root() -> None:
    """Retrieval-Augmented Instruction Tuning (RA-IT) for open named entity recognition."""


for _module in (data, evaluation, build, train, predict, serve, experiment, distill):
    _module.register(app)


def main() -> None:
    """Entry point: run the app and turn rait's own errors, and system errors such as a full disk or an
    unwritable output, into one red line and exit code 1."""
    try:
        app()
    except RaitError as exc:
        _error(str(exc))
    except OSError as exc:  # an output that cannot be written: permissions, a full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}")


def _error(message: str) -> None:
    make_console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(1)
