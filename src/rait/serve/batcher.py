"""Request batching: concurrent requests are merged into predictor calls, a big request piece by piece.

A request is cut into pieces: one per text with all its types, and a text that :class:`rait.api.NER` would
split into chunks (longer than ``max_chunk_tokens``) one piece per chunk, when it is asked without examples.
The pieces are the facade's own chunks, so the answers are those of the text served whole; a text is never
cut by its types (its questions share its prefix: that was measured to double its time,
``benchmarks/bench_serve_pieces.py``). Requests wait in an asyncio queue; the worker takes the first, keeps
taking requests for at most ``max_wait_ms`` or until ``max_batch`` pieces are waiting, then fills a batch
taking one piece of each waiting request in turn, the requests with the least left to serve first, up to
``max_batch`` pieces and ``max_batch_chars`` characters x types; a request passed over in ``MAX_PASSED``
batches in a row goes first, and a piece much costlier than the batch's first (``MIX_RATIO``) waits for a
later batch. So a small request that arrives while a big one is being served goes into the next batch, before
the big one's next piece, instead of waiting for all of it. A batch runs
through :meth:`rait.api.NER.extract` on one worker thread (the model is never called concurrently), one call
per (example mode, decoding), at the lowest threshold of its requests (answers scored below it are cut
short; each request then applies its own). When a call fails, each of its pieces is retried alone, so only
the requests whose own text fails get the error. Past ``max_queue`` texts waiting or running, a request is
refused at once (:class:`QueueFull`) instead of queueing without bound."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rait.api import NER, Extraction
from rait.serve import DEFAULT_MAX_BATCH_CHARS

MAX_PASSED = 2  # a request left out of this many batches in a row goes first in the next
MIX_RATIO = 4  # a batch's pieces cost at most this many times its first one (or a quarter of its room)


class QueueFull(Exception):
    """More texts are waiting than the queue allows."""


@dataclass(slots=True)
class _Piece:
    job: _Job
    text: int  # index in job.texts
    span: tuple[int, int]  # the characters of that text it holds

    @property
    def chars(self) -> str:
        start, end = self.span
        return self.job.texts[self.text][start:end]

    @property
    def types(self) -> tuple[str, ...]:
        return self.job.types[self.text]

    @property
    def cost(self) -> int:
        return (self.span[1] - self.span[0]) * len(self.types)


@dataclass(slots=True)
class _Job:
    texts: list[str]
    types: list[tuple[str, ...]]
    examples: str
    decoding: str | None
    future: asyncio.Future
    floor: float = 0.0  # the lowest score the request keeps (its threshold)
    enqueued: float = field(default_factory=time.perf_counter)
    pieces: deque[_Piece] = field(default_factory=deque)  # not yet taken into a batch
    chunks: list[list[tuple[int, int]]] = field(default_factory=list)  # per text, the spans of its pieces
    found: dict[tuple[int, int], Extraction] = field(default_factory=dict)  # (text, piece start) -> found
    n_open: int = 0  # pieces not yet answered
    split: bool = False  # cut by the chunks of its texts
    started: float | None = None
    predict_ms: float = 0.0
    batch_texts: int = 0
    batches: int = 0
    last_batch: int = -1
    passed: int = 0  # batches in a row formed without a piece of it

    def cut(self, ner: NER | None = None) -> None:
        """One piece per text, or per chunk of a text that ``ner`` splits (asked without examples)."""
        self.chunks = [
            ner.chunk_spans(text, types) if ner is not None else [(0, len(text))]
            for text, types in zip(self.texts, self.types, strict=True)
        ]
        self.pieces = deque(_Piece(self, i, span) for i, spans in enumerate(self.chunks) for span in spans)
        self.n_open = len(self.pieces)
        self.split = ner is not None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One request's extractions and how it was served: milliseconds from arrival to its first batch and
    predicting its batches, the most pieces in a predictor batch it shared, and the number of batches."""

    extractions: list[Extraction]
    queue_ms: float
    predict_ms: float
    batch_texts: int
    batches: int


class Batcher:
    """Merge concurrent :meth:`submit` calls into predictor batches (see the module docs)."""

    def __init__(
        self,
        ner: NER,
        *,
        max_batch: int = 16,
        max_wait_ms: float = 10.0,
        max_queue: int = 256,
        max_batch_chars: int = DEFAULT_MAX_BATCH_CHARS,
    ):
        self.ner = ner
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.max_batch_chars = max_batch_chars
        self.pending_texts = 0  # queued or being predicted
        self.n_batches = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rait-predict")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker and its thread."""
        if self._worker is not None:
            while self.pending_texts:
                await asyncio.sleep(0.01)
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(
        self,
        texts: Sequence[str],
        types: Sequence[tuple[str, ...]],
        examples: str = "none",
        decoding: str | None = None,
        floor: float | None = None,
    ) -> BatchResult:
        """Extract entities from ``texts`` (``types``: one tuple per text) in the next batches. ``floor``:
        the lowest score the caller keeps (its threshold): entities scored below it may be left out, and
        answers scored below it are cut short; None keeps every entity."""
        if self.pending_texts + len(texts) > self.max_queue:
            raise QueueFull(f"server busy: {self.pending_texts} texts queued (limit {self.max_queue})")
        future = asyncio.get_running_loop().create_future()
        job = _Job(list(texts), list(types), examples, decoding, future, floor or 0.0)
        job.cut()
        self.pending_texts += len(job.texts)
        try:
            await self._queue.put(job)
            return await job.future
        finally:
            self.pending_texts -= len(job.texts)

    async def _gather(self, active: list[_Job]) -> None:
        """Add to ``active`` the jobs that arrive within the wait, until ``max_batch`` pieces wait."""
        deadline = time.perf_counter() + self.max_wait
        while sum(len(job.pieces) for job in active) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    return
            active.append(job)

    def _take(self, active: list[_Job]) -> list[_Piece]:
        """One piece of each active job in turn, up to ``max_batch`` pieces and ``max_batch_chars``: the jobs
        with the least left to serve first, except that a job passed over in ``MAX_PASSED`` batches goes
        first; a piece over ``MIX_RATIO`` times the first piece's cost (and over a quarter of
        ``max_batch_chars``) waits for a later batch, so a small request never waits for a big piece."""
        waiting = sorted(
            (job for job in active if job.pieces),
            key=lambda job: (job.passed < MAX_PASSED, sum(piece.cost for piece in job.pieces)),
        )
        batch: list[_Piece] = []
        cost, most = 0, None  # the costliest piece that may join the batch
        grew = True
        while grew:
            grew = False
            for job in waiting:
                if not job.pieces or most is not None and job.pieces[0].cost > most:
                    continue
                piece = job.pieces[0]
                if batch and (len(batch) >= self.max_batch or cost + piece.cost > self.max_batch_chars):
                    return self._passed(waiting, batch)
                batch.append(job.pieces.popleft())
                cost += piece.cost
                grew = True
                if most is None:
                    most = max(MIX_RATIO * piece.cost, self.max_batch_chars // MIX_RATIO)
        return self._passed(waiting, batch)

    @staticmethod
    def _passed(waiting: list[_Job], batch: list[_Piece]) -> list[_Piece]:
        """``batch``, after counting for each waiting job whether it was passed over."""
        taken = {id(piece.job) for piece in batch}
        for job in waiting:
            job.passed = 0 if id(job) in taken else job.passed + 1
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        active: list[_Job] = []
        while True:
            if not active:
                active.append(await self._queue.get())
            await self._gather(active)
            active = [job for job in active if not job.future.done()]  # a client may have gone away
            new = [job for job in active if job.examples == "none" and not job.split]
            if new:  # on the worker thread: the tokenizer is never used concurrently
                for job, exc in await loop.run_in_executor(self._executor, self._cut, new):
                    if not job.future.done():
                        job.future.set_exception(exc)
                active = [job for job in active if not job.future.done()]
            batch = self._take(active)
            if not batch:
                continue
            started = time.perf_counter()
            answers = await loop.run_in_executor(self._executor, self._predict, batch)
            predict_ms = (time.perf_counter() - started) * 1000
            self.n_batches += 1
            for piece, found in zip(batch, answers, strict=True):
                self._deliver(piece, found, started, predict_ms, len(batch))
            active = [job for job in active if job.pieces and not job.future.done()]

    def _cut(self, jobs: list[_Job]) -> list[tuple[_Job, Exception]]:
        """Cut ``jobs`` (not yet served, asked without examples) by the chunks of their texts; the jobs
        that failed to cut, with their exception."""
        failed = []
        for job in jobs:
            try:
                job.cut(self.ner)
            except Exception as exc:  # noqa: BLE001 - reported to this request only
                failed.append((job, exc))
        return failed

    def _deliver(self, piece: _Piece, found, started: float, predict_ms: float, size: int) -> None:
        job = piece.job
        if job.future.done():
            return
        if isinstance(found, Exception):
            job.future.set_exception(found)
            return
        if job.last_batch != self.n_batches:  # the first of this job's pieces in this batch
            job.last_batch = self.n_batches
            job.started = started if job.started is None else job.started
            job.batches += 1
            job.predict_ms += predict_ms
            job.batch_texts = max(job.batch_texts, size)
        job.found[piece.text, piece.span[0]] = found
        job.n_open -= 1
        if job.n_open == 0:
            extractions = [
                Extraction.joined(spans, [job.found[i, start] for start, _ in spans])
                for i, spans in enumerate(job.chunks)
            ]
            queue_ms = (job.started - job.enqueued) * 1000
            job.future.set_result(
                BatchResult(extractions, queue_ms, job.predict_ms, job.batch_texts, job.batches)
            )

    def _predict(self, batch: list[_Piece]) -> list[Extraction | Exception]:
        """Runs on the worker thread: one :meth:`NER.extract` call per (example mode, decoding); a failed
        call is retried piece by piece, and a piece that fails alone gets its exception."""
        results: list[Extraction | Exception | None] = [None] * len(batch)
        modes = [(piece.job.examples, piece.job.decoding) for piece in batch]
        for examples, decoding in dict.fromkeys(modes):
            chosen = [i for i, mode in enumerate(modes) if mode == (examples, decoding)]
            try:
                found = self._extract([batch[i] for i in chosen], examples, decoding)
            except Exception as exc:  # noqa: BLE001 - each piece of several is retried alone below
                if len(chosen) == 1:
                    results[chosen[0]] = exc
                    continue
                found = None
            for n, i in enumerate(chosen):
                if found is not None:
                    results[i] = found[n]
                    continue
                try:
                    results[i] = self._extract([batch[i]], examples, decoding)[0]
                except Exception as exc:  # noqa: BLE001 - reported to this piece's request only
                    results[i] = exc
        return results

    def _extract(self, pieces: list[_Piece], examples: str, decoding: str | None) -> list[Extraction]:
        """The pieces' extractions, every entity scored at least the lowest of their requests' floors (each
        request applies its own threshold and multi_label)."""
        return self.ner.extract(
            [piece.chars for piece in pieces],
            [piece.types for piece in pieces],
            examples,
            batch_size=len(pieces),
            decoding=decoding,
            threshold=min(piece.job.floor for piece in pieces),
            multi_label=True,
        )
