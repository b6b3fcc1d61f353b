"""CLI commands for the evaluation stage."""

from pathlib import Path
from typing import Annotated

import typer

from rait.console import make_console
from rait.evaluation import evaluate_files, render_table
from rait.fileio import write_json


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
) -> None:
    """Score predictions with UniversalNER's micro P/R/F1 per benchmark; print the table and write JSON."""
    report = evaluate_files(predictions, strict_spans=strict_spans)
    output = output or default_report_path(predictions[0])
    write_json(output, report.to_dict())
    console = make_console()
    console.print(render_table(report))
    console.print(f"Report written to {output}", highlight=False)
