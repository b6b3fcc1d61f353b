"""CLI commands for the predict stage: ``rait predict`` and ``rait quickstart``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rait.console import make_console
from rait.models import DEFAULT_MODEL
from rait.predict import (
    BACKENDS,
    DEFAULT_MAX_CHUNK_TOKENS,
    EXAMPLE_MODES,
    PredictConfig,
    meta_path,
    run_predict,
)
from rait.quickstart import QUICKSTART_STEPS, run_quickstart


def predict_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Predictions jsonl (QueryPrediction rows).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="LoRA adapter dir, merged model dir, Hub id or .gguf [default: smollm2-135m].",
        ),
    ] = None,
    adapter: Annotated[str | None, typer.Option(help="LoRA adapter dir to apply to --model.")] = None,
    benchmark: Annotated[
        list[str] | None,
        typer.Option("--benchmark", "-b", help="Registry benchmark (test split); repeatable."),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="Passages: .txt (one per line, needs --types) or a records file."),
    ] = None,
    input_format: Annotated[str | None, typer.Option(help="Format of --input [default: detected].")] = None,
    types: Annotated[
        str | None, typer.Option(help="Comma-separated entity types for --input (replace the file's).")
    ] = None,
    max_examples: Annotated[int, typer.Option(help="Test passages sampled per benchmark (0: all).")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of benchmark and pool sampling.")] = 42,
    examples: Annotated[str, typer.Option(help=f"In-context examples: {', '.join(EXAMPLE_MODES)}.")] = "none",
    pool: Annotated[
        str | None,
        typer.Option(
            help="Example pool: training file / registered source (out-domain), or labelled file (in-domain)."
        ),
    ] = None,
    pool_size: Annotated[
        int | None, typer.Option(help="In-domain: N labelled train examples per benchmark [default: all].")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Examples per passage.")] = 2,
    bm25_threshold: Annotated[
        float, typer.Option(help="Out-domain: drop examples below this BM25 score.")
    ] = 20.0,
    embedder: Annotated[str | None, typer.Option(help="Retrieval embedder [default: by language].")] = None,
    lang: Annotated[
        str | None, typer.Option(help="Template language en/zh [default: benchmark's / detected].")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length cap, in tokens.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Type questions decoded together.")] = 128,
    max_chunk_tokens: Annotated[
        int,
        typer.Option(
            help="Split longer passages into sentence chunks of this many tokens (0: context only)."
        ),
    ] = DEFAULT_MAX_CHUNK_TOKENS,
    backend: Annotated[
        str, typer.Option(help=f"{' or '.join(BACKENDS)} (vllm: GPU, pip install 'rait[gpu]').")
    ] = "hf",
    precision: Annotated[
        str, typer.Option(help="auto (bf16 where the CPU/GPU computes it natively), fp32 or bf16.")
    ] = "auto",
    system_prompt: Annotated[
        str | None,
        typer.Option(
            help="System turn: none, default (the chat template's own) or a text [default: the one the "
            "model was trained with, else none]."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Start over instead of resuming into --output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Extract entities for benchmarks or a file of passages (resumable; `rait evaluate` scores it)."""
    if overwrite:
        output.unlink(missing_ok=True)
        meta_path(output).unlink(missing_ok=True)
    config = PredictConfig(
        output=output,
        model=model,
        adapter=adapter,
        benchmarks=benchmark or [],
        input=input_file,
        input_format=input_format,
        types=[t.strip() for t in types.split(",") if t.strip()] if types else None,
        max_examples=max_examples or None,
        seed=seed,
        examples=examples,
        pool=pool,
        pool_size=pool_size,
        k=k,
        bm25_threshold=bm25_threshold,
        embedder=embedder,
        lang=lang,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        backend=backend,
        precision=precision,
        max_chunk_tokens=max_chunk_tokens or None,
        system_prompt=system_prompt,
    )
    stats = run_predict(config, progress=not quiet)
    make_console().print(
        f"{stats.n_predicted} passages predicted ({stats.n_queries} queries, {stats.n_malformed} malformed "
        f"answers), {stats.n_resumed} already done; {stats.n_with_examples} had examples, "
        f"{stats.n_chunked} were split into chunks -> {output}",
        highlight=False,
    )


def quickstart_command(
    workdir: Annotated[Path, typer.Argument(help="Working directory for data, adapter, predictions.")] = Path(
        "rait-quickstart"
    ),
    model: Annotated[str, typer.Option("--model", "-m", help="Base model to LoRA-tune.")] = DEFAULT_MODEL,
    lang: Annotated[str, typer.Option(help="Sample data language: en or zh.")] = "en",
    max_steps: Annotated[int, typer.Option(help="Optimizer steps of LoRA training.")] = QUICKSTART_STEPS,
    embedder: Annotated[str | None, typer.Option(help="Retrieval embedder [default: by language].")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build RA-IT data from the bundled samples, LoRA-train SmolLM2-135M, predict, score (resumable)."""
    result = run_quickstart(
        workdir, model=model, lang=lang, max_steps=max_steps, embedder=embedder, progress=not quiet
    )
    make_console().print(
        f"adapter: {result.adapter}   predictions: {result.predictions}\n"
        f"next: rait predict -m {result.adapter} -i passages.txt --types person,location -o preds.jsonl",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to app."""
    app.command("predict")(predict_command)
    app.command("quickstart")(quickstart_command)
