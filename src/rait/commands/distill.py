"""CLI commands for the distill stage."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rait.console import escape, make_console
from rait.distill import DistillConfig, distill
from rait.records import DEFAULT_SEED


def register(app: typer.Typer) -> None:
    """Add this stage's commands to app."""
    app.command("distill")(distill_command)


def summary_table(report: dict) -> Table:
    """Chunks, requests and drops per teacher, from a distill report."""
    table = Table(title="Distillation", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in report["chunks"].items():
        table.add_row(f"chunks {key}", str(value))
    for name, teacher in report["teachers"].items():
        requests, filtering = teacher["requests"], teacher["filtering"]
        table.add_section()
        table.add_row(f"[bold]{escape(name)}[/]", "")
        for key in ("cached", "succeeded", "sent", "tokens", "stopped_by_budget"):
            table.add_row(f"  requests {key}", str(requests[key]))
        for key, value in requests["failed"].items():
            table.add_row(escape(f"  requests failed: {key}"), str(value))
        table.add_row("  unparseable outputs", str(filtering["unparseable_outputs"]))
        table.add_row("  pairs proposed / kept", f"{filtering['pairs_proposed']} / {filtering['pairs_kept']}")
        for key, value in filtering["dropped"].items():
            table.add_row(escape(f"  dropped: {key}"), str(value))
    ensemble = report["ensemble"]
    if ensemble["teachers"] > 1:
        table.add_section()
        table.add_row(
            f"vote: kept (min {ensemble['min_agree']} of {ensemble['teachers']})", str(ensemble["pairs_kept"])
        )
        table.add_row("vote: dropped (disagreement)", str(ensemble["dropped_disagreement"]))
    return table


def distill_command(
    inputs: Annotated[list[Path], typer.Argument(help="Corpus .txt/.jsonl files or directories of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Training file to write (rait jsonl).")],
    teacher: Annotated[
        list[str] | None,
        typer.Option(
            "--teacher",
            "-t",
            help="Repeatable: openai:MODEL, openai:MODEL@BASE_URL, local or local:PATH (default: local).",
        ),
    ] = None,
    lang: Annotated[str, typer.Option(help="en (UniversalNER prompt) or zh (RA-IT prompt).")] = "en",
    sample: Annotated[
        int | None, typer.Option("--sample", "-n", help="Chunks to sample (default: all).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = DEFAULT_SEED,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="HF tokenizer name/path or tokenizer.json for chunking (default: the default model's)."
        ),
    ] = None,
    chunk_tokens: Annotated[int, typer.Option(help="Maximum tokens per chunk.")] = 256,
    text_unit: Annotated[
        str, typer.Option(help="A .txt document is a whole file, a blank-line paragraph or a line.")
    ] = "file",
    text_field: Annotated[str, typer.Option(help="Field holding the text in .jsonl files.")] = "text",
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible API base URL (default: $OPENAI_BASE_URL, else OpenAI)."),
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="API key (default: $OPENAI_API_KEY).")] = None,
    prompt_file: Annotated[
        Path | None,
        typer.Option(help='JSON {"system": ..., "user": "... {passage} ..."} replacing the prompt.'),
    ] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of chat teachers.")] = 0.0,
    max_output_tokens: Annotated[int | None, typer.Option(help="max_tokens of each chat request.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before a request times out.")] = 60.0,
    types: Annotated[
        str | None,
        typer.Option(help="Comma-separated types for the local teacher (default: a short general list)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    max_retries: Annotated[int, typer.Option(help="Retries of a request after a transient failure.")] = 5,
    max_requests: Annotated[int | None, typer.Option(help="Budget: requests sent to paid teachers.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Budget: tokens reported by paid teachers.")] = None,
    min_agree: Annotated[
        str, typer.Option(help="Ensemble: teachers that must agree: majority, all, a count or a fraction.")
    ] = "majority",
    filter_rules: Annotated[
        str,
        typer.Option(
            help="ra-it: the RA-IT reference's filter; rait: stricter checks (see docs/distill.md)."
        ),
    ] = "ra-it",
    max_type_chars: Annotated[
        int, typer.Option(help="--filter-rules rait: drop entity types longer than this.")
    ] = 50,
    keep_empty: Annotated[bool, typer.Option(help="Also write chunks left with no entity.")] = False,
    cache: Annotated[
        Path | None, typer.Option(help="Response cache (default: <output stem>.cache.jsonl).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="JSON report (default: <output stem>.report.json).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Annotate a raw corpus with teacher LLMs into open-NER training data (UniversalNER-style distillation).

    Re-running the same command resumes: every answer is cached, only missing or failed requests are sent."""
    config = DistillConfig(
        inputs=inputs,
        output=output,
        lang=lang,
        tokenizer=tokenizer,
        chunk_tokens=chunk_tokens,
        text_unit=text_unit,
        text_field=text_field,
        sample_size=sample,
        seed=seed,
        teachers=teacher or ["local"],
        base_url=base_url,
        api_key=api_key,
        temperature=temperature,
        max_output_tokens=max_output_tokens,
        timeout=timeout,
        prompt_file=prompt_file,
        types=[t.strip() for t in types.split(",") if t.strip()] if types else None,
        concurrency=concurrency,
        max_retries=max_retries,
        max_requests=max_requests,
        max_tokens=max_tokens,
        min_agree=min_agree,
        max_type_chars=max_type_chars,
        filter_rules=filter_rules,
        keep_empty=keep_empty,
        cache_path=cache,
        report_path=report,
        show_progress=progress,
    )
    result = distill(config)
    console = make_console()
    console.print(summary_table(result))
    console.print(escape(f"Wrote {result['chunks']['written']} records to {output}"), highlight=False)
    console.print(escape(f"Report written to {config.resolved_report_path()}"), highlight=False)
    if result["budget"]["exhausted"]:
        console.print(
            "[yellow]Budget reached:[/] the chunks not annotated were left out; "
            "re-run with a larger budget to continue (cached answers are reused)."
        )
    if result["failures"]:
        console.print(
            f"[yellow]{len(result['failures'])} request(s) failed[/] (listed in the report); "
            "re-run to retry them."
        )
