"""CLI commands for the data stage: ``rait convert`` between formats, ``rait benchmarks`` (the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rait.console import escape, make_console
from rait.data.benchmarks import BENCHMARKS, TRAINING_SOURCES, data_dir, is_available
from rait.data.formats import LOAD_FORMATS, WRITE_FORMATS, convert, parse_columns
from rait.errors import RaitError
from rait.fileio import check_output_file, writes_stdout
from rait.templates import WORDINGS


def convert_command(
    input: Annotated[Path, typer.Argument(help="Data file to read.")],
    output: Annotated[
        Path,
        typer.Argument(
            help="File to write; - for standard output. A device or named pipe is written through, a "
            "symbolic link's target is replaced."
        ),
    ],
    from_fmt: Annotated[
        str | None,
        typer.Option("--from", help=f"Input format [default: detected]: {', '.join(LOAD_FORMATS)}."),
    ] = None,
    to_fmt: Annotated[str, typer.Option("--to", help=f"Output format: {', '.join(WRITE_FORMATS)}.")] = "rait",
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip malformed items (counted and listed) instead of failing.")
    ] = False,
    lang: Annotated[
        str | None, typer.Option("--lang", help="Template language for uniner/messages [default: detected].")
    ] = None,
    columns: Annotated[
        str | None, typer.Option(help="conll input: token and tag columns, 1-based, e.g. 1,4 [first,last].")
    ] = None,
    tag_names: Annotated[
        str | None, typer.Option(help="tokens-tags input with integer tags: the label list, comma-separated.")
    ] = None,
) -> None:
    """Convert an NER data file between formats (uniner/messages: vanilla UniversalNER conversations)."""
    if from_fmt is not None and from_fmt not in LOAD_FORMATS:
        raise RaitError(f"--from {from_fmt!r}: choose one of {', '.join(LOAD_FORMATS)}")
    if to_fmt not in WRITE_FORMATS:
        raise RaitError(f"--to {to_fmt!r}: choose one of {', '.join(WRITE_FORMATS)}")
    if lang is not None and to_fmt not in ("uniner", "messages"):
        raise RaitError(f"--lang applies to --to uniner or messages only, not {to_fmt}")
    if lang not in (None, *WORDINGS):
        raise RaitError(f"--lang {lang!r}: choose one of {', '.join(WORDINGS)}")
    check_output_file(output)
    stats = convert(
        input,
        output,
        from_fmt,
        to_fmt,
        skip_bad=skip_bad,
        lang=lang,
        columns=None if columns is None else parse_columns(columns),
        tag_names=None if tag_names is None else [t.strip() for t in tag_names.split(",")],
    )
    to_stdout = writes_stdout(output)
    where = "standard output" if to_stdout else output
    console = make_console(stderr=to_stdout)  # the data alone on standard output
    for message in stats.skipped:
        console.print(f"[yellow]skipped[/] {escape(message)}", highlight=False)
    console.print(
        escape(
            f"{stats.records} records, {stats.mentions} mentions written to {where}; "
            f"{len(stats.skipped)} skipped, {len(stats.repaired)} repaired"
        ),
        highlight=False,
    )


def benchmarks_command(
    data: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data directory [default: $RAIT_DATA_DIR or ../shared/data]."),
    ] = None,
) -> None:
    """List the registered benchmarks and training sources, and whether their files are here."""
    root = data if data is not None else data_dir()
    table = Table(title=escape(f"Benchmarks (data: {root or 'not found'})"))
    for column in ("name", "kind", "lang", "#types", "splits", "here?"):
        table.add_column(column, no_wrap=True)
    table.add_column("notes", ratio=1)
    for spec in (*BENCHMARKS.values(), *TRAINING_SOURCES.values()):
        split = "test" if "test" in spec.splits else "train"
        available = root is not None and is_available(spec.name, split, data_dir=root)
        table.add_row(
            spec.name,
            spec.kind,
            spec.lang,
            str(len(spec.types)) if spec.labels is not None else "open",
            ",".join(spec.splits),
            "[green]yes[/]" if available else "[red]no[/]",
            spec.notes,
        )
    make_console().print(table)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to app."""
    app.command("convert")(convert_command)
    app.command("benchmarks")(benchmarks_command)
