"""CLI commands for the predict stage: ``rait predict`` and ``rait quickstart``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rait.api import model_defaults
from rait.builtin import default_model, resolve_builtin
from rait.console import escape, make_console
from rait.corpus.ray import DEFAULT_SHARD_SIZE
from rait.data.benchmarks import DEFAULT_MAX_EXAMPLES
from rait.data.formats import parse_columns
from rait.data.labels import BUILTIN_MAPS
from rait.errors import RaitError
from rait.fileio import write_json
from rait.hub import saved_settings
from rait.inference import (
    BACKENDS,
    DECODINGS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODING,
    DEFAULT_MAX_CHUNK_TOKENS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_THRESHOLD,
    PredictConfig,
    run_predict,
)
from rait.models import DEFAULT_MODEL
from rait.precision import DEFAULT_PRECISION
from rait.quickstart import QUICKSTART_STEPS, run_quickstart
from rait.records import DEFAULT_SEED
from rait.retrieval import DEFAULT_BM25_THRESHOLD, DEFAULT_NUM_EXAMPLES, EXAMPLE_MODES

ENGINES = ("local", "ray")


def predict_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Predictions jsonl (QueryPrediction rows).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="LoRA adapter dir, merged model dir, Hub id, .gguf or built-in model name [default: the "
            "built-in model smollm2-ner-en when installed, else the untuned smollm2-135m].",
        ),
    ] = None,
    adapter: Annotated[str | None, typer.Option(help="LoRA adapter dir to apply to --model.")] = None,
    benchmark: Annotated[
        list[str] | None,
        typer.Option("--benchmark", "-b", help="Registry benchmark (test split); repeatable."),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="A labelled file in any format (a benchmark: every passage asked about every type), "
            "or plain passages, one per line (needs --types).",
        ),
    ] = None,
    input_format: Annotated[
        str | None,
        typer.Option(
            help="Format of --input (text: plain passages, one per line; passages: jsonl/parquet rows with "
            "'text' and an optional 'id') [default: detected]."
        ),
    ] = None,
    types: Annotated[
        str | None, typer.Option(help="Comma-separated entity types for --input (replace the file's).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Benchmark name of --input [default: file stem, or its folder for test.txt etc.]."),
    ] = None,
    label_map: Annotated[
        str | None,
        typer.Option(
            help="--input label codes to type names: JSON/YAML file, PER=person,LOC=location, or a built-in "
            f"map ({', '.join(BUILTIN_MAPS)}) [default: the built-in map matching the file's codes]."
        ),
    ] = None,
    columns: Annotated[
        str | None, typer.Option(help="CoNLL --input: token and tag columns, 1-based, e.g. 1,4 [first,last].")
    ] = None,
    tag_names: Annotated[
        str | None,
        typer.Option(help="tokens-tags --input with integer tags: the label list, comma-separated."),
    ] = None,
    max_examples: Annotated[
        int | None,
        typer.Option(
            help="Passages sampled (seeded by --seed, kept in file order) from each benchmark and from the "
            f"--input file; 0: all [default: {DEFAULT_MAX_EXAMPLES} of a benchmark, all of an --input file]."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of benchmark and pool sampling.")] = DEFAULT_SEED,
    examples: Annotated[
        str | None,
        typer.Option(
            help=f"In-context examples: {', '.join(EXAMPLE_MODES)} [default: the model's own, with the pool "
            "it was saved with; else none]."
        ),
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(
            help="Example pool: training file / registered source (out-domain), or labelled file (in-domain) "
            "[default: the model's saved pool for its own mode and for out-domain]."
        ),
    ] = None,
    pool_size: Annotated[
        int | None, typer.Option(help="In-domain: N labelled train examples per benchmark [default: all].")
    ] = None,
    k: Annotated[
        int | None, typer.Option("-k", help=f"Examples per passage [{DEFAULT_NUM_EXAMPLES}].")
    ] = None,
    bm25_threshold: Annotated[
        float | None,
        typer.Option(help=f"Out-domain: drop examples below this BM25 score [{DEFAULT_BM25_THRESHOLD:g}]."),
    ] = None,
    stopwords: Annotated[
        str | None, typer.Option(help="BM25 stopwords: en, zh or a file [default: none].")
    ] = None,
    allow_identical_examples: Annotated[
        bool,
        typer.Option(
            help="Let pool passages identical to the test passage be examples (the reference's behaviour)."
        ),
    ] = False,
    embedder: Annotated[str | None, typer.Option(help="Retrieval embedder [default: by language].")] = None,
    lang: Annotated[
        str | None, typer.Option(help="Template language en/zh [default: benchmark's / detected].")
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option(help="Answer length cap, in tokens (cuts <= 0.5% of any benchmark's gold answers).")
    ] = DEFAULT_MAX_NEW_TOKENS,
    stop_repetition: Annotated[
        bool,
        typer.Option(
            "--stop-repetition/--no-stop-repetition", help="End an answer once it repeats itself [on]."
        ),
    ] = True,
    batch_size: Annotated[int, typer.Option(help="Type questions decoded together.")] = DEFAULT_BATCH_SIZE,
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
    ] = DEFAULT_PRECISION,
    system_prompt: Annotated[
        str | None,
        typer.Option(
            help="System turn: none, default (the chat template's own) or a text [default: the one the "
            "model was trained with, else none]."
        ),
    ] = None,
    decoding: Annotated[
        str | None,
        typer.Option(
            help=f"{', '.join(DECODINGS)} (constrained: answers are lists of distinct passage substrings; "
            "constrained-words: substrings that start and end at word boundaries) [default: the model's "
            f"saved one, else {DEFAULT_DECODING}]."
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Drop mentions scored below this confidence, 0 to 1 (0: keep all; files keep every score) "
            f"[default: the model's saved one, else {DEFAULT_THRESHOLD:g}]."
        ),
    ] = None,
    multi_label: Annotated[
        bool | None,
        typer.Option(
            "--multi-label/--one-type-per-span",
            help="Keep every type given to a span, or only the best-scoring one [default: the model's saved "
            "choice, else one type per span].",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help=f"{' or '.join(ENGINES)}: one process, or Ray actors writing --output as a directory of "
            "shards (pip install 'rait[ray]')."
        ),
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="--engine ray: the Ray cluster to join [default: a local Ray].")
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(help="--engine ray: actors, each holding one model [1].")
    ] = None,
    gpus_per_worker: Annotated[
        float | None, typer.Option(help="--engine ray: GPUs per actor [1 with --backend vllm, else 0].")
    ] = None,
    cpus_per_worker: Annotated[float | None, typer.Option(help="--engine ray: CPUs per actor [1].")] = None,
    shard_size: Annotated[
        int | None,
        typer.Option(
            help=f"--engine ray: passages per output shard, the unit of resuming [{DEFAULT_SHARD_SIZE}]."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Start over instead of resuming into --output.")] = False,
    evaluate: Annotated[
        bool,
        typer.Option("--evaluate", help="Then score the predictions: print the F1 table, write metrics."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Extract entities for benchmarks or a file of passages (resumable; `rait evaluate` scores it)."""
    model_dir = resolve_builtin(default_model(model, adapter))
    saved = saved_settings(model_dir)
    shipped = saved.get("pool") or {}
    own = examples is None and saved.get("examples") == "pool" and shipped
    examples = shipped.get("mode", EXAMPLE_MODES[0]) if own else examples or EXAMPLE_MODES[0]
    if shipped and pool is None and (own or examples == "out-domain"):  # the model's saved pool
        pool = str(Path(model_dir) / shipped["records"])
        k = shipped.get("k") if k is None else k
        if examples == "out-domain" and bm25_threshold is None:
            bm25_threshold = shipped.get("bm25_threshold")
    unused = {"-k": k, "--pool": pool, "--pool-size": pool_size, "--embedder": embedder}
    if examples == "none":
        unused["--bm25-threshold"] = bm25_threshold
    elif examples == "in-domain":
        unused = {"--bm25-threshold": bm25_threshold}
    else:
        unused = {}
    for flag, value in unused.items():
        if value is not None:
            raise RaitError(f"{flag} has no effect with --examples {examples}; leave it out")
    if engine not in ENGINES:
        raise RaitError(f"unknown --engine {engine!r}; choose one of {', '.join(ENGINES)}")
    ray_flags = {
        "--ray-address": ray_address,
        "--num-workers": num_workers,
        "--gpus-per-worker": gpus_per_worker,
        "--cpus-per-worker": cpus_per_worker,
        "--shard-size": shard_size,
    }
    for flag, value in ray_flags.items():
        if engine == "local" and value is not None:
            raise RaitError(f"{flag} applies to --engine ray only; leave it out")
    decoding, threshold, multi_label = model_defaults(saved, decoding, threshold, multi_label)
    config = PredictConfig(
        output=output,
        model=model,
        adapter=adapter,
        benchmarks=benchmark or [],
        input=input_file,
        input_format=input_format,
        types=None if types is None else [t.strip() for t in types.split(",") if t.strip()],
        name=name,
        label_map=label_map,
        columns=None if columns is None else parse_columns(columns),
        tag_names=None if tag_names is None else [t.strip() for t in tag_names.split(",")],
        max_examples=DEFAULT_MAX_EXAMPLES if max_examples is None else max_examples or None,
        input_max_examples=max_examples or None,
        seed=seed,
        examples=examples,
        pool=pool,
        pool_size=pool_size,
        k=DEFAULT_NUM_EXAMPLES if k is None else k,
        bm25_threshold=DEFAULT_BM25_THRESHOLD if bm25_threshold is None else bm25_threshold,
        stopwords=stopwords,
        allow_identical_examples=allow_identical_examples,
        embedder=embedder,
        lang=lang,
        max_new_tokens=max_new_tokens,
        stop_repetition=stop_repetition,
        batch_size=batch_size,
        backend=backend,
        precision=precision,
        max_chunk_tokens=max_chunk_tokens or None,
        system_prompt=system_prompt,
        decoding=decoding,
        threshold=threshold,
        multi_label=multi_label,
    )
    console = make_console()
    log = lambda line: console.print(escape(line), highlight=False)  # noqa: E731
    if engine == "ray":
        from rait.corpus.ray import RayOptions, run_predict_ray, shard_files  # Ray itself loads only here

        options = RayOptions(
            address=ray_address,
            num_workers=num_workers or 1,
            cpus_per_worker=cpus_per_worker or 1.0,
            gpus_per_worker=gpus_per_worker,
            shard_size=shard_size or DEFAULT_SHARD_SIZE,
        )
        stats = run_predict_ray(config, options, log=log, overwrite=overwrite, progress=not quiet)
        outputs = shard_files(output)
    else:
        stats = run_predict(config, progress=not quiet, log=log, overwrite=overwrite)
        outputs = [output]
    log(
        f"{stats.n_predicted} passages predicted ({stats.n_queries} queries, {stats.n_malformed} malformed "
        f"answers, {stats.n_capped} hit the {max_new_tokens}-token cap, {stats.n_repetition} stopped "
        f"repeating themselves), {stats.n_resumed} already done; {stats.n_with_examples} had examples, "
        f"{stats.n_chunked} were split into chunks -> {output}"
    )
    if evaluate:
        from rait.commands.evaluation import default_report_path
        from rait.evaluation import evaluate_files, render_table

        report = evaluate_files(outputs)
        write_json(default_report_path(output), report.to_dict())
        console.print(render_table(report))
        log(f"Report written to {default_report_path(output)}")


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
        escape(
            f"adapter: {result.adapter}   predictions: {result.predictions}\n"
            f"next: rait predict -m {result.adapter} -i passages.txt --types person,location -o preds.jsonl"
        ),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to app."""
    app.command("predict")(predict_command)
    app.command("quickstart")(quickstart_command)
