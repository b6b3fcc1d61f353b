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
        _check_arguments(sys.argv[1:])
        app()
    except RaitError as exc:
        _error(str(exc))
    except OSError as exc:  # an output that cannot be written: permissions, a full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}")


def _check_arguments(arguments: list[str]) -> None:
    """RaitError for an argument that is not UTF-8 (Python keeps such bytes as lone surrogates, which no
    output file can hold): outputs record their options and paths as UTF-8 text."""
    for argument in arguments:
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            shown = argument.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            message = f"argument '{shown}' is not UTF-8 text; rename the file or fix the argument"
            raise RaitError(message) from None


def _error(message: str) -> None:
    make_console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(1)
