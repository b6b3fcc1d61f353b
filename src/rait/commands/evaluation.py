"""CLI commands for the evaluation stage."""

from pathlib import Path
from typing import Annotated

import typer

from rait.answers import PROTOCOLS
from rait.console import escape, make_console
from rait.errors import RaitError
from rait.evaluation import evaluate_files, render_table
from rait.fileio import check_output_file, write_json, writes_stdout


def register(app: typer.Typer) -> None:
    """Add this stage's commands to app."""
    app.command("evaluate")(evaluate_command)


def default_report_path(predictions: Path) -> Path:
    """``<stem>.metrics.json`` beside a predictions file."""
    return predictions.with_name(f"{predictions.stem}.metrics.json")


def evaluate_command(
    predictions: Annotated[
        list[Path],
        typer.Argument(help="Predictions jsonl files: QueryPrediction rows, as `rait predict` writes."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="JSON report path (default: <stem>.metrics.json beside the first file)."
        ),
    ] = None,
    strict_spans: Annotated[
        bool, typer.Option("--strict-spans", help="Match (start, end) spans instead of normalised strings.")
    ] = False,
    protocol: Annotated[
        str,
        typer.Option(
            help="Where the answer's list is found: uniner (at the start, as UniversalNER's evaluate.py) "
            "or ra-it (anywhere, re.search, as the RA-IT paper's evaluate.py) [uniner]."
        ),
    ] = "uniner",
) -> None:
    """Score predictions with UniversalNER's micro P/R/F1 per benchmark; print the table and write JSON."""
    if protocol not in PROTOCOLS:
        raise RaitError(f"unknown --protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    output = output or default_report_path(predictions[0])
    check_output_file(output)
    report = evaluate_files(predictions, strict_spans=strict_spans, protocol=protocol)
    write_json(output, report.to_dict())
    console = make_console(stderr=writes_stdout(output))  # the JSON alone on standard output
    console.print(render_table(report))
    console.print(f"Report written to {escape(output)}", highlight=False)
