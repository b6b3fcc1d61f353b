"""CLI command ``rait serve``: the HTTP API and web page over a model (needs the ``serve`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rait.console import make_console
from rait.inference import (
    BACKENDS,
    DECODINGS,
    DEFAULT_DECODING,
    DEFAULT_MAX_CHUNK_TOKENS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_THRESHOLD,
)
from rait.precision import DEFAULT_PRECISION
from rait.retrieval import DEFAULT_BM25_THRESHOLD, DEFAULT_NUM_EXAMPLES
from rait.serve import DEFAULT_MAX_BATCH_CHARS


def serve_command(
    model: Annotated[
        str | None,
        typer.Argument(
            help="LoRA adapter dir, merged model dir, Hub id, .gguf or built-in model name [default: the "
            "built-in model smollm2-ner-en when installed, else the untuned smollm2-135m]."
        ),
    ] = None,
    adapter: Annotated[str | None, typer.Option(help="LoRA adapter dir to apply to MODEL.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    pool: Annotated[
        str | None, typer.Option(help="Example pool (training file / registered source) for examples modes.")
    ] = None,
    pool_mode: Annotated[
        str | None,
        typer.Option(
            help="What examples='pool' means: out-domain or in-domain [default: the model's saved pool's, "
            "else out-domain]."
        ),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "-k", help=f"Examples per text [default: the saved pool's, else {DEFAULT_NUM_EXAMPLES}]."
        ),
    ] = None,
    bm25_threshold: Annotated[
        float | None,
        typer.Option(
            help=f"Out-domain: drop examples below this BM25 [default: the saved pool's, else "
            f"{DEFAULT_BM25_THRESHOLD:g}]."
        ),
    ] = None,
    embedder: Annotated[str | None, typer.Option(help="Pool embedder [default: by language].")] = None,
    lang: Annotated[str | None, typer.Option(help="Template language en/zh [default: detected].")] = None,
    max_new_tokens: Annotated[
        int, typer.Option(help="Answer length cap, in tokens.")
    ] = DEFAULT_MAX_NEW_TOKENS,
    backend: Annotated[str, typer.Option(help=f"{' or '.join(BACKENDS)} (vllm: GPU).")] = "hf",
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = DEFAULT_PRECISION,
    system_prompt: Annotated[
        str | None,
        typer.Option(help="none, default or a text [default: the one the model was trained with]."),
    ] = None,
    decoding: Annotated[
        str | None,
        typer.Option(
            help=f"Default decoding: {', '.join(DECODINGS)} (requests may choose) [default: the model's "
            f"saved one, else {DEFAULT_DECODING}]."
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Default score threshold, 0 to 1 (requests may choose) [default: the model's saved one, "
            f"else {DEFAULT_THRESHOLD:g}]."
        ),
    ] = None,
    multi_label: Annotated[
        bool | None,
        typer.Option(
            "--multi-label/--one-type-per-span",
            help="Default: every type of a span, or only its best-scoring one (requests may choose) "
            "[default: the model's saved choice, else one type per span].",
            show_default=False,
        ),
    ] = None,
    max_chunk_tokens: Annotated[
        int, typer.Option(help="Split longer texts into sentence chunks of this many tokens (0: context).")
    ] = DEFAULT_MAX_CHUNK_TOKENS,
    max_batch: Annotated[int, typer.Option(help="Most texts merged into one predictor batch.")] = 16,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for more requests to batch.")] = 10.0,
    max_queue: Annotated[int, typer.Option(help="Most texts waiting or running; past it: 503.")] = 256,
    max_text_chars: Annotated[int, typer.Option(help="Longest text accepted (413 past it).")] = 20_000,
    max_texts: Annotated[int, typer.Option(help="Most texts in one request (413 past it).")] = 64,
    max_types: Annotated[int, typer.Option(help="Most entity types per text (422 past it).")] = 32,
    max_batch_chars: Annotated[
        int,
        typer.Option(
            help="Most characters x types in one predictor batch; requests are served text by text and a "
            "long text chunk by chunk, taking turns with the others."
        ),
    ] = DEFAULT_MAX_BATCH_CHARS,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<name>",
            help="A Host header name to accept (repeatable; * for any) [default: bound to a loopback "
            "address, only 127.0.0.1, localhost and ::1; else any].",
        ),
    ] = None,
) -> None:
    """Serve a model over HTTP: POST /v1/extract, GET /v1/info, GET /health, and a web page at /."""
    from rait.api import NER
    from rait.builtin import default_model
    from rait.models import DEFAULT_MODEL
    from rait.serve import _require_extra, bind, run_server
    from rait.serve.app import ServeLimits

    _require_extra()
    limits = ServeLimits(
        max_text_chars=max_text_chars,
        max_texts=max_texts,
        max_types=max_types,
        max_queue=max_queue,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_batch_chars=max_batch_chars,
    )
    sock = bind(host, port)  # before loading the model: a port in use fails at once
    try:
        ner = NER.from_pretrained(
            model,
            adapter=adapter,
            pool=pool,
            pool_mode=pool_mode,
            k=k,
            bm25_threshold=bm25_threshold,
            lang=lang,
            embedder=embedder,
            max_new_tokens=max_new_tokens,
            backend=backend,
            precision=precision,
            system_prompt=system_prompt,
            decoding=decoding,
            max_chunk_tokens=max_chunk_tokens or None,
            threshold=threshold,
            multi_label=multi_label,
        )
    except BaseException:
        sock.close()
        raise
    name = default_model(model, adapter) or DEFAULT_MODEL
    shipped = "the model's own" if pool is None and ner.pool is not None else None
    info = {
        "model": _public(name),
        "adapter": _public(adapter),
        "backend": backend,
        "pool": _public(pool) or shipped,
    }
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    make_console(stderr=True).print(f"rait serve: {url}  (Ctrl-C or SIGTERM to stop)", highlight=False)
    allowed = tuple(allowed_host) if allowed_host else None
    run_server(ner, host=host, port=port, limits=limits, info=info, sock=sock, allowed_hosts=allowed)


def _public(name: str | None) -> str | None:
    """What ``GET /v1/info`` shows of a model, adapter or pool: an absolute path's last part only (the
    server's folders are nobody's business); a relative path, Hub id or registered name as given."""
    return Path(name).name if name is not None and Path(name).is_absolute() else name


def register(app: typer.Typer) -> None:
    """Add ``rait serve``."""
    app.command("serve")(serve_command)
