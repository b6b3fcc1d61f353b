"""In-context examples at inference, by example mode: ``none``; ``out-domain`` (the k nearest passages of a
general training pool, kept when their BM25 score against the passage reaches a threshold, the paper's
setting); ``in-domain`` (the k nearest of a pool labelled for the target domain). :func:`example_retriever`
turns a mode and an :class:`rait.retrieval.pool.ExamplePool` into the :class:`Retriever` that
``rait predict``, :class:`rait.NER` and ``rait serve`` use; ``rait experiment`` builds its own
:class:`Retriever` with the cell's strategy."""

from __future__ import annotations

from dataclasses import dataclass

from rait.errors import RaitError
from rait.records import DEFAULT_SEED, Record
from rait.retrieval.pool import DEFAULT_BM25_THRESHOLD, DEFAULT_K, DEFAULT_MIXED_RATIO, DEFAULT_NUM_EXAMPLES

POOL_MODES = ("out-domain", "in-domain")
EXAMPLE_MODES = ("none", *POOL_MODES)


def check_mode(mode: str, modes: tuple[str, ...] = EXAMPLE_MODES, what: str = "example mode") -> str:
    """``mode`` if it is one of ``modes``; otherwise a RaitError naming them."""
    if mode not in modes:
        raise RaitError(f"unknown {what} {mode!r}; choose one of {', '.join(modes)}")
    return mode


@dataclass(slots=True)
class Retriever:
    """Examples for passages from an :class:`rait.retrieval.pool.ExamplePool`
    (:meth:`~rait.retrieval.pool.ExamplePool.retrieve`): by default the ``k`` nearest neighbours, filtered
    by BM25 score against the passage when ``bm25_threshold`` is set (the paper's out-domain setting);
    ``None`` keeps plain nearest neighbours (in-domain). ``strategy`` (any of
    :data:`rait.retrieval.pool.STRATEGIES`, with ``K`` and ``mixed_ratio``) replaces that choice.
    ``allow_identical``: pool passages with exactly the passage's text may be examples (the reference's
    behaviour; rait excludes them by default). ``by_id``: seed each passage's sampling by its record id
    (else by its text)."""

    pool: object
    k: int = DEFAULT_NUM_EXAMPLES
    bm25_threshold: float | None = None
    seed: int = DEFAULT_SEED
    allow_identical: bool = False
    strategy: str | None = None
    K: int = DEFAULT_K
    mixed_ratio: float = DEFAULT_MIXED_RATIO
    by_id: bool = False

    def __call__(self, records: list[Record]) -> list[list[Record]]:
        texts = [r.text for r in records]
        options = {"k": self.k, "seed": self.seed, "exclude_identical": not self.allow_identical}
        if self.by_id:
            options["query_ids"] = [r.id for r in records]
        if self.strategy is not None:
            options |= {"K": self.K, "mixed_ratio": self.mixed_ratio}
            threshold = DEFAULT_BM25_THRESHOLD if self.bm25_threshold is None else self.bm25_threshold
            return self.pool.retrieve(texts, strategy=self.strategy, bm25_threshold=threshold, **options)
        if self.bm25_threshold is None:
            return self.pool.retrieve(texts, strategy="nn", **options)
        return self.pool.retrieve(texts, strategy="nn_bm25", bm25_threshold=self.bm25_threshold, **options)


def example_retriever(
    mode: str,
    pool,
    *,
    k: int = DEFAULT_NUM_EXAMPLES,
    bm25_threshold: float = DEFAULT_BM25_THRESHOLD,
    seed: int = DEFAULT_SEED,
    allow_identical: bool = False,
) -> Retriever | None:
    """The examples of an example mode from ``pool``: None for ``none``; the ``k`` nearest, BM25-filtered
    at ``bm25_threshold`` for ``out-domain``; the ``k`` nearest for ``in-domain``."""
    if check_mode(mode) == "none":
        return None
    threshold = bm25_threshold if mode == "out-domain" else None
    return Retriever(pool, k, threshold, seed, allow_identical)
