"""The HTTP API: ``POST /v1/extract``, ``GET /v1/info``, ``GET /health`` and the web page at ``/``.

Every error is a JSON object ``{"error": message, "field": name or null}``: 422 for malformed JSON (also
not UTF-8, or nested too deeply), wrong field types, texts or types that are not valid Unicode, empty or
unknown fields and options; 413 for a text, or a list of texts, over the limits; 503 (with
``Retry-After``) when the queue is full; 400 for a ``Host`` header not allowed; 500 when prediction fails,
with an ``error_id`` that the server log gives the details under (internal details never reach the
client). There is no Swagger page (it would load from a CDN); the schema is at ``/openapi.json``."""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException

import rait
from rait.api import EXAMPLES, NER, check_unicode
from rait.errors import RaitError
from rait.inference import DECODINGS, Predictor, select_entities
from rait.serve import DEFAULT_MAX_BATCH_CHARS
from rait.serve.batcher import Batcher, QueueFull
from rait.templates import WORDINGS

log = logging.getLogger(__name__)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # a server bound to one accepts only these Host names
TypeName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


@dataclass(frozen=True, slots=True)
class ServeLimits:
    """Request limits and batching settings of a server."""

    max_text_chars: int = 20_000
    max_texts: int = 64
    max_types: int = 32
    max_queue: int = 256
    max_batch: int = 16
    max_wait_ms: float = 10.0
    max_batch_chars: int = DEFAULT_MAX_BATCH_CHARS

    def __post_init__(self):
        for name in ("max_text_chars", "max_texts", "max_types", "max_queue", "max_batch", "max_batch_chars"):
            if getattr(self, name) < 1:
                raise RaitError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise RaitError(f"--max-wait-ms must be at least 0, not {self.max_wait_ms}")


class ExtractRequest(BaseModel):
    """Body of ``POST /v1/extract``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | list[str] = Field(description="One text or a list of texts.")
    types: list[TypeName] | list[list[TypeName]] = Field(
        min_length=1, description="Entity types for every text, or one list per text."
    )
    examples: Literal[EXAMPLES] | None = Field(
        None, description="In-context examples from the server's pool; null: the server's default."
    )
    decoding: Literal[DECODINGS] | None = Field(
        None, description=f"{', '.join(DECODINGS)}; null: the server's."
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="Drop entities scored below this (0: none); null: the server's."
    )
    multi_label: bool | None = Field(
        None, description="Keep every type of a span, or only its best-scoring one; null: the server's."
    )


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def _error(status: int, message: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def _crash(exc: Exception) -> JSONResponse:
    """A 500 answer with an error id; the exception is logged under that id."""
    error_id = uuid.uuid4().hex[:12]
    log.error("request failed, error id %s", error_id, exc_info=exc)
    message = f"prediction failed (error id {error_id}; the details are in the server's log)"
    return JSONResponse({"error": message, "field": None, "error_id": error_id}, status_code=500)


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    # a union (text: str | list[str]) reports its member's name in loc; the field is the first part
    field = loc[0] if loc else None
    if first.get("type") == "json_invalid":
        return _error(422, f"malformed JSON: {first.get('ctx', {}).get('error', first['msg'])}", "body")
    if first.get("type") == "extra_forbidden":
        return _error(422, f"unknown field {field!r}", field)
    if first.get("type") == "missing":
        return _error(422, f"{field}: field required", field)
    if field is None:
        return _error(422, f"body: {first['msg']}", "body")
    where = ".".join(part for part in loc if not part.startswith(("str", "list[", "function")))
    if first.get("type") == "string_unicode":
        return _error(422, f"{where}: not valid Unicode (a lone surrogate)", field)
    if field == "text" and len(loc) <= 2:
        return _error(422, "text: must be a string or a list of strings", field)
    return _error(422, f"{where}: {first['msg']}", field)


def _check(body: ExtractRequest, limits: ServeLimits) -> tuple[list[str], list[tuple[str, ...]]]:
    texts = [body.text] if isinstance(body.text, str) else body.text
    if not texts:
        raise ApiError(422, "text: give a text or a non-empty list of texts", "text")
    if len(texts) > limits.max_texts:
        raise ApiError(413, f"text: {len(texts)} texts, more than the limit of {limits.max_texts}", "text")
    for i, text in enumerate(texts):
        try:
            check_unicode(text, "text" if isinstance(body.text, str) else f"text[{i}]")
        except ValueError as exc:  # refused here, before it could share a batch with other requests
            raise ApiError(422, str(exc), "text") from None
        if len(text) > limits.max_text_chars:
            raise ApiError(
                413,
                f"text[{i}]: {len(text)} characters, more than the limit of {limits.max_text_chars}",
                "text",
            )
    per_text = isinstance(body.types[0], list)
    if per_text and len(body.types) != len(texts):
        raise ApiError(422, f"types: {len(body.types)} lists of types for {len(texts)} texts", "types")
    # a repeated type is asked once (type names with a lone surrogate got pydantic's 422 already)
    if per_text:
        types = [tuple(dict.fromkeys(entry)) for entry in body.types]
    else:
        types = [tuple(dict.fromkeys(body.types))] * len(texts)
    for entry in types:
        if not entry:
            raise ApiError(422, "types: a list of types is empty", "types")
        if len(entry) > limits.max_types:
            raise ApiError(
                422, f"types: {len(entry)} types, more than the limit of {limits.max_types}", "types"
            )
    return texts, types


def _host_name(header: str) -> str:
    """The host name of a ``Host`` header, without its port (``[::1]:8000`` -> ``::1``)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def create_app(
    ner: NER,
    limits: ServeLimits = ServeLimits(),
    info: dict | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
) -> FastAPI:
    """The FastAPI app serving ``ner``; ``info`` adds to ``GET /v1/info`` (model name, adapter...).
    ``allowed_hosts``: the host names a request's ``Host`` header may give (``None``: any)."""
    batcher = Batcher(
        ner,
        max_batch=limits.max_batch,
        max_wait_ms=limits.max_wait_ms,
        max_queue=limits.max_queue,
        max_batch_chars=limits.max_batch_chars,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()  # uvicorn has let in-flight requests finish (SIGTERM drains)

    # no /docs or /redoc: their pages load scripts from a CDN (blank offline, and third-party code)
    app = FastAPI(title="rait", version=rait.__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher
    page = resources.files("rait.serve").joinpath("static/index.html").read_text(encoding="utf-8")
    allowed = None if allowed_hosts is None else {name.lower() for name in allowed_hosts}

    @app.middleware("http")
    async def check_host(request: Request, call_next):
        host = _host_name(request.headers.get("host", "")).lower()
        if allowed is not None and "*" not in allowed and host not in allowed:
            # DNS rebinding: a web page's own host name pointed at this loopback server
            return _error(400, f"Host {host!r} not allowed (rait serve --allowed-host)", "host")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError):
        return _validation_error(exc)

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, exc: ApiError):
        return _error(exc.status, exc.message, exc.field, exc.headers)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException):
        if exc.status_code == 400 and request.method == "POST":  # a body FastAPI could not parse as JSON
            try:
                (await request.body()).decode("utf-8")
            except UnicodeDecodeError as bad:
                return _error(422, f"malformed JSON: not UTF-8 (byte {bad.start})", "body")
            return _error(422, "malformed JSON: nested too deeply", "body")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_crash(_request: Request, exc: Exception):
        return _crash(exc)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page

    @app.get("/health")
    async def health():
        return {"status": "ok", "pending_texts": batcher.pending_texts, "batches": batcher.n_batches}

    @app.get("/v1/info")
    async def v1_info():
        current = getattr(ner.predictor, "decoding", None)
        modes = ["none"] + ([m for m in EXAMPLES if m != "none"] if ner.pool is not None else [])
        return {
            "rait_version": rait.__version__,
            **(info or {}),
            "languages": sorted(WORDINGS),
            "lang": ner.lang or "detected per text",
            "examples": modes,
            "examples_default": ner.examples,
            "decoding": current,
            "threshold": ner.threshold,
            "multi_label": ner.multi_label,
            "decodings": list(DECODINGS) if isinstance(ner.predictor, Predictor) else [current],
            "pool_mode": ner.pool_mode if ner.pool is not None else None,
            "k": ner.k,
            "max_chunk_tokens": ner.answerer.max_chunk_tokens,
            "context_tokens": ner.answerer.context,
            "limits": asdict(limits),
        }

    @app.post("/v1/extract")
    async def extract(body: ExtractRequest):
        started = time.perf_counter()
        texts, types = _check(body, limits)
        examples = body.examples or ner.examples
        if examples != "none" and ner.pool is None:
            raise ApiError(422, f"examples: {examples!r} needs a server started with --pool", "examples")
        decodings = [d for d in DECODINGS if isinstance(ner.predictor, Predictor)]
        if body.decoding not in (None, getattr(ner.predictor, "decoding", None), *decodings):
            raise ApiError(
                422, f"decoding: this server's model decodes only {ner.predictor.decoding!r}", "decoding"
            )
        threshold = ner.threshold if body.threshold is None else body.threshold
        try:
            served = await batcher.submit(texts, types, examples, body.decoding, threshold)
        except QueueFull as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        except Exception as exc:  # noqa: BLE001 - this request's prediction failed; logged, not re-raised
            return _crash(exc)
        multi_label = ner.multi_label if body.multi_label is None else body.multi_label
        results = [
            {
                "entities": select_entities(found.entities, threshold, multi_label),
                "chunks": [list(span) for span in found.chunks],
                "malformed": found.n_malformed,
                "examples": found.n_examples,
            }
            for found in served.extractions
        ]
        timing = {
            "queue_ms": round(served.queue_ms, 2),
            "predict_ms": round(served.predict_ms, 2),
            "total_ms": round((time.perf_counter() - started) * 1000, 2),
            "batch_texts": served.batch_texts,
            "batches": served.batches,
        }
        return {"results": results, "timing": timing}

    return app
