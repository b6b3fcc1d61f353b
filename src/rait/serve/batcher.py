"""Request batching: concurrent requests are merged into predictor calls, big requests in pieces.

A request is cut into pieces: a text with its types, or, when the text's characters times its number of types
pass a quarter of ``max_batch_chars``, with a group of its types (the answers of each type are independent, so
the pieces' entities together are the whole text's). Requests wait in an asyncio queue; the worker takes the
first, keeps taking requests for at most ``max_wait_ms`` or until ``max_batch`` pieces are waiting, then fills
a batch taking one piece of each waiting request in turn, up to ``max_batch`` pieces and ``max_batch_chars``
characters x types. So a small request that arrives while a big one is being served goes into the next batch,
beside the big one's next piece, instead of waiting for all of it. A batch runs through
:meth:`rait.api.NER.extract` on one worker thread (the model is never called concurrently), one call per
(example mode, decoding). When a call fails, each of its texts is retried alone, so only the requests whose
own text fails get the error. Past ``max_queue`` texts waiting or running, a request is refused at once
(:class:`QueueFull`) instead of queueing without bound."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rait.api import NER, Extraction
from rait.serve import DEFAULT_MAX_BATCH_CHARS

PIECES_PER_BATCH = 4  # a piece is at most this fraction of max_batch_chars, so others fit beside it


class QueueFull(Exception):
    """More texts are waiting than the queue allows."""


@dataclass(slots=True)
class _Piece:
    job: _Job
    text: int  # index in job.texts
    first_type: int  # index in job.types[text] of this piece's first type
    types: tuple[str, ...]

    @property
    def cost(self) -> int:
        return len(self.job.texts[self.text]) * len(self.types)


@dataclass(slots=True)
class _Job:
    texts: list[str]
    types: list[tuple[str, ...]]
    examples: str
    decoding: str | None
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    pieces: deque[_Piece] = field(default_factory=deque)  # not yet taken into a batch
    parts: dict[int, list[tuple[int, Extraction]]] = field(default_factory=dict)  # text -> found pieces
    n_open: int = 0  # pieces not yet answered
    started: float | None = None
    predict_ms: float = 0.0
    batch_texts: int = 0
    batches: int = 0
    last_batch: int = -1

    def cut(self, piece_chars: int) -> None:
        """Cut into pieces of at most ``piece_chars`` characters x types (at least one type each)."""
        for index, (text, types) in enumerate(zip(self.texts, self.types, strict=True)):
            size = max(1, piece_chars // max(1, len(text)))
            for start in range(0, len(types), size):
                self.pieces.append(_Piece(self, index, start, types[start : start + size]))
        self.n_open = len(self.pieces)


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
        self.piece_chars = max(1, max_batch_chars // PIECES_PER_BATCH)
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
    ) -> BatchResult:
        """Extract entities from ``texts`` (``types``: one tuple per text) in the next batches."""
        if self.pending_texts + len(texts) > self.max_queue:
            raise QueueFull(f"server busy: {self.pending_texts} texts queued (limit {self.max_queue})")
        job = _Job(list(texts), list(types), examples, decoding, asyncio.get_running_loop().create_future())
        job.cut(self.piece_chars)
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
        """One piece of each active job in turn, up to ``max_batch`` pieces and ``max_batch_chars``."""
        batch: list[_Piece] = []
        cost = 0
        while any(job.pieces for job in active):
            for job in active:
                if not job.pieces:
                    continue
                piece = job.pieces[0]
                if batch and (len(batch) >= self.max_batch or cost + piece.cost > self.max_batch_chars):
                    return batch
                batch.append(job.pieces.popleft())
                cost += piece.cost
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        active: list[_Job] = []
        while True:
            if not active:
                active.append(await self._queue.get())
            await self._gather(active)
            active = [job for job in active if not job.future.done()]  # a client may have gone away
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
        job.parts.setdefault(piece.text, []).append((piece.first_type, found))
        job.n_open -= 1
        if job.n_open == 0:
            extractions = [_merge(job.parts[i]) for i in range(len(job.texts))]
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
        """The pieces' extractions; pieces of one text are asked as one text (its prefix computed once)."""
        texts: dict[tuple[int, int], list[_Piece]] = {}
        for piece in pieces:
            texts.setdefault((id(piece.job), piece.text), []).append(piece)
        groups = list(texts.values())
        found = self.ner.extract(
            [group[0].job.texts[group[0].text] for group in groups],
            [tuple(t for piece in group for t in piece.types) for group in groups],
            examples,
            batch_size=len(groups),
            decoding=decoding,
            threshold=0,  # every entity: each request applies its threshold and multi_label to the whole
            multi_label=True,
        )
        split: dict[int, Extraction] = {}
        for group, whole in zip(groups, found, strict=True):
            for n, piece in enumerate(group):
                entities = [e for e in whole.entities if e["type"] in piece.types]
                malformed = whole.n_malformed if n == 0 else 0  # counted once, with the first piece
                split[id(piece)] = Extraction(entities, whole.chunks, malformed, whole.n_examples)
        return [split[id(piece)] for piece in pieces]


def _merge(parts: list[tuple[int, Extraction]]) -> Extraction:
    """One text's extraction from its pieces' (in type order, entities by position as
    :func:`rait.entities.entities_from_answers` orders them)."""
    parts = sorted(parts, key=lambda part: part[0])
    if len(parts) == 1:
        return parts[0][1]
    entities = [entity for _, found in parts for entity in found.entities]
    entities.sort(key=lambda e: (not e["found"], e["start"] or 0, -(e["end"] or 0)))
    first = parts[0][1]
    return Extraction(entities, first.chunks, sum(f.n_malformed for _, f in parts), first.n_examples)
