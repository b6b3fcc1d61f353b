"""CLI commands for the evaluation stage."""

from pathlib import Path
from typing import Annotated

import typer

from rait.answers import PROTOCOLS
from rait.console import escape, make_console
from rait.errors import RaitError
from rait.evaluation import (
    curve_points,
    evaluate,
    read_prediction_files,
    render_curve,
    render_table,
    sweep,
)
from rait.fileio import check_output_file, write_json, writes_stdout
from rait.inference import DEFAULT_MULTI_LABEL, check_threshold, reselect


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
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Choose the mentions again from their scores: drop those below this (0 to 1) "
            "[default: as the predictions were written]."
        ),
    ] = None,
    multi_label: Annotated[
        bool | None,
        typer.Option(
            "--multi-label/--one-type-per-span",
            help="Choose again: every type of a span, or only its best-scoring one [default: as written].",
        ),
    ] = None,
    curve: Annotated[
        bool,
        typer.Option(
            "--curve",
            help="Also sweep the threshold (0 to 0.99): print and write the precision-recall curve.",
        ),
    ] = False,
) -> None:
    """Score predictions with UniversalNER's micro P/R/F1 per benchmark; print the table and write JSON."""
    if protocol not in PROTOCOLS:
        raise RaitError(f"unknown --protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    check_threshold(threshold)
    output = output or default_report_path(predictions[0])
    check_output_file(output)
    rows = read_prediction_files(predictions, strict_spans=strict_spans)
    rechoose = threshold is not None or multi_label is not None
    multi_label = DEFAULT_MULTI_LABEL if multi_label is None else multi_label
    try:
        if rechoose:
            rows = reselect(rows, threshold, multi_label)
        report = evaluate(rows, strict_spans=strict_spans, protocol=protocol)
        data = report.to_dict()
        if rechoose:
            data["selection"] = {"threshold": threshold, "multi_label": multi_label}
        if curve:
            choose = lambda found, t: reselect(found, t, multi_label)  # noqa: E731
            points = sweep(rows, choose, strict_spans=strict_spans, protocol=protocol)
    except ValueError as exc:
        raise RaitError(str(exc)) from None
    console = make_console(stderr=writes_stdout(output))  # the JSON alone on standard output
    console.print(render_table(report))
    if curve:
        data["curve"] = curve_points(points, multi_label)
        console.print(render_curve(data["curve"]))
    write_json(output, data)
    console.print(f"Report written to {escape(output)}", highlight=False)
