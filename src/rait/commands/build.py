"""CLI commands for the build stage: ``rait build-data``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rait.build_data import FORMATS, METHODS, BuildConfig, build_data, manifest_path
from rait.console import escape, make_console
from rait.errors import RaitError
from rait.negatives import DEFAULT_HARD_POOL, NEGATIVE_SAMPLINGS
from rait.records import DEFAULT_SEED
from rait.retrieval import (
    DEFAULT_BM25_THRESHOLD,
    DEFAULT_K,
    DEFAULT_MIXED_RATIO,
    DEFAULT_NUM_EXAMPLES,
    INDEXES,
    STRATEGIES,
)


def build_data_command(
    source: Annotated[
        str,
        typer.Argument(help="Data file, registered source name (e.g. pile_ner_subset) or hub:<dataset id>."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Data file to write (.json list or .jsonl).")
    ],
    method: Annotated[str, typer.Option(help=f"One of: {', '.join(METHODS)}.")] = "ra-it",
    k: Annotated[
        int | None,
        typer.Option("-k", "--examples", help=f"Retrieved examples per sample [{DEFAULT_NUM_EXAMPLES}]."),
    ] = None,
    strategy: Annotated[str | None, typer.Option(help=f"One of: {', '.join(STRATEGIES)} [nn].")] = None,
    K: Annotated[
        int, typer.Option("-K", "--candidates", help="Nearest neighbours the dnn strategies sample from.")
    ] = DEFAULT_K,
    bm25_threshold: Annotated[
        float, typer.Option(help="Drop examples scoring below this BM25 (the *_bm25 strategies).")
    ] = DEFAULT_BM25_THRESHOLD,
    mixed_ratio: Annotated[
        float, typer.Option(help="Fraction of samples given NN examples (mixed_nn).")
    ] = DEFAULT_MIXED_RATIO,
    size: Annotated[
        int | None,
        typer.Option(help="Seeded subsample of the source (also the retrieval pool) [default: all]."),
    ] = None,
    lang: Annotated[str | None, typer.Option(help="en or zh [default: the source's, else detected].")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"One of: {', '.join(FORMATS)}.")] = "sharegpt",
    negative_prob: Annotated[
        float,
        typer.Option(help="Per present type, the chance of one absent type asked too (0: none)."),
    ] = 0.5,
    negatives: Annotated[
        int | None,
        typer.Option(
            min=0, help="Negative types per passage (the product recipe, instead of --negative-prob)."
        ),
    ] = None,
    negative_ratio: Annotated[
        float | None,
        typer.Option(min=0.0, help="Negative types per present type (the product recipe)."),
    ] = None,
    negative_sampling: Annotated[
        str,
        typer.Option(
            help=f"With --negatives/--negative-ratio: {', '.join(NEGATIVE_SAMPLINGS)} (hard: the types "
            "nearest to the passage's own by embedding; mixed: half hard)."
        ),
    ] = "frequency",
    hard_pool: Annotated[
        int, typer.Option(min=1, help="Hard negatives are drawn from this many nearest absent types.")
    ] = DEFAULT_HARD_POOL,
    embedder: Annotated[
        str | None,
        typer.Option(
            help="minilm, use-multilingual, or a sentence-transformers id/path [default: by language]."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every sampling step.")] = DEFAULT_SEED,
    source_format: Annotated[
        str | None, typer.Option(help="Format of a source file [default: detected].")
    ] = None,
    stopwords: Annotated[
        str | None, typer.Option(help="BM25 stopwords: en, zh or a file [default: none].")
    ] = None,
    index: Annotated[
        str, typer.Option(help=f"kNN index: {', '.join(INDEXES)} (approximate: huge pools).")
    ] = "flat",
    cache_dir: Annotated[
        str | None,
        typer.Option(help="Embedding cache directory [default: $RAIT_CACHE_DIR or ~/.cache/rait]."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build vanilla or RA-IT instruction-tuning conversations from a training source."""
    if method == "vanilla":
        for flag, value in (("-k", k), ("--strategy", strategy)):
            if value is not None:
                raise RaitError(
                    f"{flag} has no effect with --method vanilla (no retrieved examples); leave it out"
                )
    config = BuildConfig(
        source=source,
        output=output,
        method=method,
        k=DEFAULT_NUM_EXAMPLES if k is None else k,
        strategy=strategy or "nn",
        K=K,
        bm25_threshold=bm25_threshold,
        mixed_ratio=mixed_ratio,
        size=size,
        lang=lang,
        format=fmt,
        negative_prob=negative_prob,
        negatives=negatives,
        negative_ratio=negative_ratio,
        negative_sampling=negative_sampling,
        hard_pool=hard_pool,
        embedder=embedder,
        seed=seed,
        source_format=source_format,
        stopwords=stopwords,
        index=index,
        cache_dir=cache_dir,
        show_progress=not quiet,
    )
    manifest = build_data(config)
    counts = manifest["counts"]
    line = f"wrote {counts['conversations']} conversations to {output}"
    if "fallback_vanilla" in counts:
        line += f" ({counts['fallback_vanilla']} without examples: vanilla template)"
    console = make_console()
    console.print(escape(line), highlight=False)
    console.print(
        escape(f"manifest: {manifest_path(output)} ({manifest['timings_s']['total']:.1f} s)"), highlight=False
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to app."""
    app.command("build-data")(build_data_command)
