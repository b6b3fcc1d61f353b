"""Request batching: concurrent requests are merged into one predictor call.

Requests wait in an asyncio queue; one worker takes the first, then keeps taking requests for at most
``max_wait_ms`` or until ``max_batch`` texts are collected, and runs them through
:meth:`rait.api.NER.extract` on one worker thread (the model is never called concurrently). Requests with
different example modes or decodings in one batch are run as one call per combination. Past ``max_queue``
texts waiting or running, a request is refused at once (:class:`QueueFull`) instead of queueing without
bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rait.api import NER, Extraction


class QueueFull(Exception):
    """More texts are waiting than the queue allows."""


@dataclass(slots=True)
class _Job:
    texts: list[str]
    types: list[tuple[str, ...]]
    examples: str
    decoding: str | None
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One request's extractions and how it was served: milliseconds queued and predicting, and the
    number of texts in the predictor batch it shared."""

    extractions: list[Extraction]
    queue_ms: float
    predict_ms: float
    batch_texts: int


class Batcher:
    """Merge concurrent :meth:`submit` calls into predictor batches (see the module docs)."""

    def __init__(self, ner: NER, *, max_batch: int = 16, max_wait_ms: float = 10.0, max_queue: int = 256):
        self.ner = ner
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
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
        """Extract entities from ``texts`` (``types``: one tuple per text) in the next batch."""
        if self.pending_texts + len(texts) > self.max_queue:
            raise QueueFull(f"server busy: {self.pending_texts} texts queued (limit {self.max_queue})")
        job = _Job(list(texts), list(types), examples, decoding, asyncio.get_running_loop().create_future())
        self.pending_texts += len(job.texts)
        try:
            await self._queue.put(job)
            return await job.future
        finally:
            self.pending_texts -= len(job.texts)

    async def _collect(self, first: _Job) -> tuple[list[_Job], _Job | None]:
        """``first`` plus the jobs that arrive within the wait and fit the batch; a job that does not fit
        is handed back to start the next batch."""
        jobs, size = [first], len(first.texts)
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(job.texts) > self.max_batch:
                return jobs, job
            jobs.append(job)
            size += len(job.texts)
        return jobs, None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carry: _Job | None = None
        while True:
            first = carry or await self._queue.get()
            jobs, carry = await self._collect(first)
            live = [job for job in jobs if not job.future.done()]  # a client may have gone away
            if not live:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._predict, live)
            except Exception as exc:  # noqa: BLE001 - reported to every waiting request
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            predict_ms = (time.perf_counter() - started) * 1000
            size = sum(len(job.texts) for job in live)
            self.n_batches += 1
            for job, extractions in zip(live, results, strict=True):
                if not job.future.done():
                    queue_ms = (started - job.enqueued) * 1000
                    job.future.set_result(BatchResult(extractions, queue_ms, predict_ms, size))

    def _predict(self, jobs: list[_Job]) -> list[list[Extraction]]:
        """Runs on the worker thread: one :meth:`NER.extract` call per (example mode, decoding)."""
        results: list[list[Extraction] | None] = [None] * len(jobs)
        for examples, decoding in dict.fromkeys((job.examples, job.decoding) for job in jobs):
            chosen = [i for i, job in enumerate(jobs) if (job.examples, job.decoding) == (examples, decoding)]
            texts = [text for i in chosen for text in jobs[i].texts]
            types = [t for i in chosen for t in jobs[i].types]
            found = iter(self.ner.extract(texts, types, examples, batch_size=len(texts), decoding=decoding))
            for i in chosen:
                results[i] = [next(found) for _ in jobs[i].texts]
        return results
