"""CLI commands for experiments: ``rait experiment`` runs a config's grid, ``rait report`` draws its views."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rait import bootstrap
from rait.console import escape, make_console


def experiment_command(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (see docs/experiments.md).")],
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Override the config's output_dir.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the steps and which are done; run nothing.")
    ] = False,
    collect: Annotated[
        bool,
        typer.Option(
            "--collect",
            help="Write results.json and results.md from the cells finished so far; run nothing "
            "(works while the experiment runs).",
        ),
    ] = False,
    export_adapters: Annotated[
        bool,
        typer.Option(
            "--export-adapters",
            help="Store every finished LoRA adapter in the adapter store (bf16, for git); run nothing.",
        ),
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="With --collect: choose every cell's mentions again, dropping those scored below this "
            "(0 to 1), and write results.<threshold>-<one-type|multi-label>.json/.md instead.",
        ),
    ] = None,
    multi_label: Annotated[
        bool,
        typer.Option(
            "--multi-label/--one-type-per-span",
            help="With --threshold: every type of a span, or only its best-scoring one.",
        ),
    ] = True,
    thresholds_from: Annotated[
        Path | None,
        typer.Option(
            "--thresholds-from",
            help="With --collect: each model's threshold (and one type per span or not) from a held-out "
            "F1 record (scripts/ship_model.py --by heldout-f1 --choose-threshold); writes "
            "results.per-model-<one-type|multi-label>.json/.md.",
        ),
    ] = None,
    adapters: Annotated[
        Path | None,
        typer.Option(
            "--adapters",
            help="Adapter store: restore committed adapters instead of training, store new ones "
            "[default: the config's adapters, else none].",
        ),
    ] = None,
) -> None:
    """Run every unfinished cell of an experiment; write results.json and results.md in its output dir."""
    import dataclasses

    from rait.errors import RaitError
    from rait.experiment import collect_results, load_config, plan, run_experiment, write_results
    from rait.fileio import check_output_dir
    from rait.inference import check_threshold

    if sum((collect, dry_run, export_adapters)) > 1:
        raise RaitError("--collect, --dry-run and --export-adapters exclude each other: give one of them")
    if (threshold is not None or thresholds_from is not None) and not collect:
        raise RaitError(
            "--threshold and --thresholds-from choose the mentions of finished cells again: give them "
            "with --collect"
        )
    if threshold is not None and thresholds_from is not None:
        raise RaitError("--threshold and --thresholds-from exclude each other: give one of them")
    choice = None if threshold is None else (check_threshold(threshold), multi_label)
    if thresholds_from is not None:
        from rait.experiment.heldout import chosen_thresholds
        from rait.fileio import read_json

        choice = chosen_thresholds(read_json(thresholds_from), str(thresholds_from))
    console = make_console()
    cfg = load_config(config, output_dir=output_dir)
    if adapters is not None:
        cfg = dataclasses.replace(cfg, adapters=adapters)
    if export_adapters:
        _export(cfg, console)
        return
    if collect:  # no experiment lock: the writes are atomic, a running experiment keeps going
        check_output_dir(cfg.output_dir)
        steps = plan(cfg)
        results = collect_results(cfg, steps, choice)
        json_path, md_path = write_results(cfg, results)
        stale = sum(1 for step in steps if step.stage == "eval" and step.status() == "stale")
        console.print(
            escape(
                f"{len(results['rows'])} eval cells in results, {len(results['missing'])} missing"
                + (f" ({stale} made with other settings than the config's)" if stale else "")
                + f"; written to {json_path} and {md_path}"
            ),
            highlight=False,
        )
        return
    if not dry_run:
        results = run_experiment(cfg, log=lambda line: console.print(escape(line), highlight=False))
        console.print(
            escape(
                f"{len(results['rows'])} eval cells done; results in {cfg.output_dir / 'results.json'} "
                f"and {cfg.output_dir / 'results.md'}"
            ),
            highlight=False,
        )
        return
    table = Table(
        title=escape(
            f"{cfg.name}: {len(cfg.train_cells())} training cells, {len(cfg.eval_cells())} eval cells"
        )
    )
    for column in ("stage", "cell", "status", "directory"):
        table.add_column(column)
    counts: dict[str, int] = {}
    for step in plan(cfg):
        status = step.status()
        counts[status] = counts.get(status, 0) + 1
        style = {"done": "green", "stale": "red"}.get(status)
        table.add_row(
            step.stage,
            escape(step.name),
            f"[{style}]{status}[/]" if style else status,
            escape(step.directory),
        )
    console.print(table)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    console.print(escape(f"{summary}; output {cfg.output_dir}"), highlight=False)


def _export(cfg, console) -> None:
    from rait.experiment import plan
    from rait.experiment.adapters import export_adapters

    runs = export_adapters(cfg, plan(cfg))
    total = 0
    for name, entry, stored in runs:
        if stored is None:
            console.print(escape(f"{name}: not stored (no LoRA adapter: full fine-tuning)"), highlight=False)
            continue
        size = sum(f["bytes"] for f in stored["files"].values())
        total += size
        console.print(escape(f"{name}: {entry} ({size / 1e6:.1f} MB)"), highlight=False)
    console.print(escape(f"{len(runs)} finished training runs; {total / 1e6:.1f} MB stored"), highlight=False)


def report_command(
    results: Annotated[Path, typer.Argument(help="results.json of an experiment, or its output directory.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Report directory (default: beside RESULTS).")
    ] = None,
    bootstrap_samples: Annotated[
        int, typer.Option("--bootstrap-samples", min=1, help="Resamples for the 95% intervals.")
    ] = bootstrap.DEFAULT_SAMPLES,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the bootstrap resampling.")
    ] = bootstrap.DEFAULT_SEED,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="A model of the results (e.g. n2217-vanilla-s42): also compare every setting with it, "
            "without examples, same decoding (paired bootstrap).",
        ),
    ] = None,
) -> None:
    """Write the paper's views of an experiment's results: report.md, PNG plots and scores.json (the numbers),
    with bootstrap intervals where the results have per-sentence counts."""
    from rait.fileio import check_output_dir
    from rait.report import SCORES_JSON, build_report, load_results

    data = load_results(results)
    where = check_output_dir(
        output if output is not None else (results if results.is_dir() else results.parent)
    )
    path = build_report(data, where, source=results, samples=bootstrap_samples, seed=seed, baseline=baseline)
    numbers = path.with_name(SCORES_JSON)
    make_console().print(f"Report written to {escape(path)}, scores to {escape(numbers)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to app."""
    app.command("experiment")(experiment_command)
    app.command("report")(report_command)
