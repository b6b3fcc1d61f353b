"""The HTTP API: ``POST /v1/extract``, ``GET /v1/info``, ``GET /health`` and the web page at ``/``.

Every error is a JSON object ``{"error": message, "field": name or null}``: 422 for malformed JSON, wrong
field types, empty or unknown fields and options; 413 for a text, or a list of texts, over the limits; 503
(with ``Retry-After``) when the queue is full; 500 when prediction fails."""

from __future__ import annotations

import time
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
from rait.api import EXAMPLES, NER
from rait.errors import RaitError
from rait.inference import DECODINGS, Predictor
from rait.serve.batcher import Batcher, QueueFull
from rait.templates import WORDINGS

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

    def __post_init__(self):
        for name in ("max_text_chars", "max_texts", "max_types", "max_queue", "max_batch"):
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
    examples: Literal[EXAMPLES] = Field("none", description="In-context examples from the server's pool.")
    decoding: Literal[DECODINGS] | None = Field(
        None, description=f"{', '.join(DECODINGS)}; null: the server's."
    )


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def _error(status: int, message: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


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
    if field == "text" and len(loc) <= 2:
        return _error(422, "text: must be a string or a list of strings", field)
    where = ".".join(part for part in loc if not part.startswith(("str", "list[", "function")))
    return _error(422, f"{where}: {first['msg']}", field)


def _check(body: ExtractRequest, limits: ServeLimits) -> tuple[list[str], list[tuple[str, ...]]]:
    texts = [body.text] if isinstance(body.text, str) else body.text
    if not texts:
        raise ApiError(422, "text: give a text or a non-empty list of texts", "text")
    if len(texts) > limits.max_texts:
        raise ApiError(413, f"text: {len(texts)} texts, more than the limit of {limits.max_texts}", "text")
    for i, text in enumerate(texts):
        if len(text) > limits.max_text_chars:
            raise ApiError(
                413,
                f"text[{i}]: {len(text)} characters, more than the limit of {limits.max_text_chars}",
                "text",
            )
    per_text = isinstance(body.types[0], list)
    if per_text and len(body.types) != len(texts):
        raise ApiError(422, f"types: {len(body.types)} lists of types for {len(texts)} texts", "types")
    types = [tuple(t) for t in body.types] if per_text else [tuple(body.types)] * len(texts)
    for entry in types:
        if not entry:
            raise ApiError(422, "types: a list of types is empty", "types")
        if len(entry) > limits.max_types:
            raise ApiError(
                422, f"types: {len(entry)} types, more than the limit of {limits.max_types}", "types"
            )
    return texts, types


def create_app(ner: NER, limits: ServeLimits = ServeLimits(), info: dict | None = None) -> FastAPI:
    """The FastAPI app serving ``ner``; ``info`` adds to ``GET /v1/info`` (model name, adapter...)."""
    batcher = Batcher(
        ner, max_batch=limits.max_batch, max_wait_ms=limits.max_wait_ms, max_queue=limits.max_queue
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()  # uvicorn has let in-flight requests finish (SIGTERM drains)

    app = FastAPI(title="rait", version=rait.__version__, lifespan=lifespan)
    app.state.batcher = batcher
    page = resources.files("rait.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError):
        return _validation_error(exc)

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, exc: ApiError):
        return _error(exc.status, exc.message, exc.field, exc.headers)

    @app.exception_handler(HTTPException)
    async def on_http_error(_request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_crash(_request: Request, exc: Exception):
        return _error(500, f"prediction failed: {type(exc).__name__}: {exc}")

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
            "decoding": current,
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
        if body.examples != "none" and ner.pool is None:
            raise ApiError(422, f"examples: {body.examples!r} needs a server started with --pool", "examples")
        decodings = [d for d in DECODINGS if isinstance(ner.predictor, Predictor)]
        if body.decoding not in (None, getattr(ner.predictor, "decoding", None), *decodings):
            raise ApiError(
                422, f"decoding: this server's model decodes only {ner.predictor.decoding!r}", "decoding"
            )
        try:
            served = await batcher.submit(texts, types, body.examples, body.decoding)
        except QueueFull as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        results = [
            {
                "entities": found.entities,
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
        }
        return {"results": results, "timing": timing}

    return app
