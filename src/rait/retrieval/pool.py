"""Example retrieval for RA-IT: exact cosine kNN with faiss, a BM25 filter on gensim 3.8's scale, and the
paper's sampling strategies over an :class:`ExamplePool` of labelled records.

Strategies (``k`` examples per query; ``K`` candidates for the diverse ones):

- ``nn``: the k nearest neighbours.
- ``nn_bm25``: the k nearest, then drop those whose BM25 score against the query is below the threshold.
- ``dnn``: sample k of the K nearest.  ``dnn_bm25``: sample k of the K nearest, then the BM25 filter.
- ``random``: k uniformly random pool records.
- ``mixed_nn``: a fraction ``mixed_ratio`` of the queries get ``nn``, the rest ``random``.

A query never retrieves itself or a record with exactly its text. Sampling is seeded per query
(``seed`` + query id), so a query's examples do not depend on the order of queries or records (nor,
except for which queries ``mixed_nn`` gives NN examples to, on the other queries)."""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp

from rait.console import progress
from rait.data.formats import load_records, write_records
from rait.data.sources import detect_lang, load_source, subsample
from rait.errors import DataError, RaitError
from rait.fileio import atomic_write
from rait.records import DEFAULT_SEED, Record
from rait.retrieval.bm25 import BM25Index
from rait.retrieval.embed import Embedder, get_embedder, l2_normalise

STRATEGIES = ("nn", "nn_bm25", "dnn", "dnn_bm25", "random", "mixed_nn")
INDEXES = ("flat", "hnsw", "ivf")
DEFAULT_NUM_EXAMPLES = 2  # k, the examples per passage
DEFAULT_K = 128  # K, the nearest neighbours the diverse strategies sample k from
DEFAULT_BM25_THRESHOLD = 20.0
DEFAULT_MIXED_RATIO = 0.5
POOL_RECORDS = "pool.jsonl"  # a saved pool's records (rait format) and their embeddings, row for row
POOL_VECTORS = "pool_vectors.npy"


def check_options(
    k: int, strategy: str, K: int = DEFAULT_K, mixed_ratio: float = DEFAULT_MIXED_RATIO
) -> None:
    """Raise RaitError for an unknown strategy or out-of-range k / K / ratio."""
    if strategy not in STRATEGIES:
        raise RaitError(f"unknown retrieval strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if k < 0:
        raise RaitError(f"k must be >= 0, got {k}")
    if strategy.startswith("dnn") and K < k:
        raise RaitError(f"K ({K}) must be >= k ({k}) for strategy {strategy}")
    if not 0.0 <= mixed_ratio <= 1.0:
        raise RaitError(f"mixed ratio must be in [0, 1], got {mixed_ratio}")


# ----------------------------------------------------------------------------------------------- kNN


def build_index(vectors: np.ndarray, kind: str = "flat", seed: int = DEFAULT_SEED) -> faiss.Index:
    """A faiss inner-product index over L2-normalised ``vectors`` (so scores are cosines).

    ``flat`` is exact (the default; reproducible). For pools in the millions use ``hnsw`` (graph,
    M=32, no training; efSearch is raised to the number of results asked) or ``ivf`` (inverted lists,
    ``4*sqrt(n)`` clusters trained on a seeded sample, nprobe 32). Approximate indexes may miss true
    neighbours and are not guaranteed to give byte-identical results across thread counts."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    elif kind == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).permutation(n)[: nlist * 256]
        index.cp.seed = seed
        index.train(vectors[np.sort(sample)])
        index.nprobe = min(nlist, 32)
    else:
        raise RaitError(f"unknown index {kind!r}; choose one of {', '.join(INDEXES)}")
    index.add(vectors)
    return index


def knn_search(
    index: faiss.Index,
    queries: np.ndarray,
    K: int,
    *,
    pool_groups: np.ndarray,
    query_groups: np.ndarray,
    batch_size: int = 4096,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``K`` most similar pool items per query, as ``(indices, scores)`` of shape ``(n, K)``.

    Pool items in the query's group (same text; group -1 matches nothing) are excluded; rows are
    ordered by decreasing score, ties by pool index; missing results are -1 / -inf. One faiss search
    per batch of queries."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    pool_groups = np.asarray(pool_groups, dtype=np.int64)
    query_groups = np.asarray(query_groups, dtype=np.int64)
    n_pool, n = index.ntotal, len(queries)
    group_size = np.bincount(pool_groups[pool_groups >= 0], minlength=int(query_groups.max(initial=0)) + 1)
    indices = np.full((n, K), -1, dtype=np.int64)
    scores = np.full((n, K), -np.inf, dtype=np.float32)
    if n_pool == 0 or K == 0:
        return indices, scores
    with progress("nearest neighbours", n, show_progress) as advance:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            groups = query_groups[start:stop]
            extra = int(group_size[groups[groups >= 0]].max(initial=0))
            want = min(K + extra, n_pool)
            if hasattr(index, "hnsw"):
                index.hnsw.efSearch = max(64, want)
            dist, found = index.search(queries[start:stop], want)
            bad = (found < 0) | (pool_groups[np.maximum(found, 0)] == groups[:, None])
            dist = np.where(bad, -np.inf, dist)
            order = np.lexsort((np.where(bad, n_pool, found), -dist), axis=-1)[:, :K]
            top = np.take_along_axis(found, order, axis=1)
            top_bad = np.take_along_axis(bad, order, axis=1)
            width = top.shape[1]
            indices[start:stop, :width] = np.where(top_bad, -1, top)
            scores[start:stop, :width] = np.take_along_axis(dist, order, axis=1)
            advance(stop - start)
    return indices, scores


# ------------------------------------------------------------------------------------------ the pool


def _unit(text: str) -> float:
    """A uniform number in [0, 1) derived from ``text`` (stable across runs and platforms)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


def mixed_nn_rows(seeds: Sequence[str], ratio: float, seed: int = DEFAULT_SEED) -> np.ndarray:
    """The rows (sorted) that get NN examples under ``mixed_nn``: exactly ``round(ratio * n)`` of them,
    those whose ``seed`` + query id hashes lowest, so the choice does not depend on query order."""
    order = sorted(range(len(seeds)), key=lambda i: (_unit(f"{seed}:mixed:{seeds[i]}"), seeds[i], i))
    return np.sort(np.array(order[: math.floor(ratio * len(seeds) + 0.5)], dtype=np.int64))


class ExamplePool:
    """Labelled records to retrieve in-context examples from, for training-data building (every
    record queries the others: :meth:`self_retrieve`) and for inference (:meth:`retrieve`).

    Embeddings (``embedder``, default the offline model for ``lang``), the faiss index and the BM25
    index are built lazily, on first need; ``vectors`` may be given precomputed (row i = record i).
    Results depend on the set of records and the query ids, not on the order of either.
    ``timings`` accumulates seconds spent embedding, in kNN search and in BM25."""

    def __init__(
        self,
        records: Sequence[Record],
        embedder: Embedder | None = None,
        lang: str = "en",
        *,
        vectors: np.ndarray | None = None,
        index: str = "flat",
        stopwords=None,
        show_progress: bool = True,
    ):
        if index not in INDEXES:
            raise RaitError(f"unknown index {index!r}; choose one of {', '.join(INDEXES)}")
        self.records = list(records)
        self.lang = lang
        self.index_kind = index
        self.stopwords = stopwords
        self.show_progress = show_progress
        self._embedder = embedder
        if vectors is not None and len(vectors) != len(self.records):
            raise RaitError(f"{len(vectors)} vectors given for {len(self.records)} pool records")
        self._vectors = None if vectors is None else l2_normalise(vectors)
        self._index: faiss.Index | None = None
        self._bm25: BM25Index | None = None
        self._group_of_text: dict[str, int] = {}
        self.groups = np.array(
            [self._group_of_text.setdefault(r.text, len(self._group_of_text)) for r in self.records],
            dtype=np.int64,
        )
        self._order = np.array(
            sorted(range(len(self.records)), key=lambda i: (self.records[i].id, i)), dtype=np.int64
        )
        self._group_members: list[list[int]] | None = None
        self.timings = {"embed": 0.0, "knn": 0.0, "bm25": 0.0}

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def from_benchmark(
        cls, name: str, size: int | None, seed: int = DEFAULT_SEED, embedder: Embedder | None = None, **kwargs
    ) -> ExamplePool:
        """In-domain pool: ``size`` seeded labelled examples (``None`` = all; 0 = an empty pool) of a
        benchmark's train split (:func:`rait.data.benchmarks.load_benchmark`)."""
        from rait.data.benchmarks import get_spec, load_benchmark

        spec = get_spec(name)
        records = [] if size == 0 else load_benchmark(spec.name, split="train", max_examples=size, seed=seed)
        return cls(records, embedder, lang=spec.lang, **kwargs)

    @classmethod
    def from_source(
        cls,
        source: str,
        embedder: Embedder | None = None,
        lang: str | None = None,
        *,
        fmt: str | None = None,
        size: int | None = None,
        seed: int = DEFAULT_SEED,
        **kwargs,
    ) -> ExamplePool:
        """Out-domain pool from a training source (a file, a registered source name or ``hub:<id>``),
        optionally a seeded subsample of ``size`` records; see :func:`rait.data.sources.load_source`."""
        records, source_lang = load_source(source, fmt)
        records = subsample(records, size, seed)
        return cls(records, embedder, lang=lang or source_lang or detect_lang(records), **kwargs)

    def save(self, directory: str | Path) -> dict:
        """Write the records (:data:`POOL_RECORDS`) and their embeddings (:data:`POOL_VECTORS`, computed
        now if need be) to ``directory``; returns what :meth:`load` needs: the file names, the embedder's
        name, the language and the size."""
        directory = Path(directory)
        write_records(self.records, directory / POOL_RECORDS, "rait")
        with atomic_write(directory / POOL_VECTORS, "wb") as handle:
            np.save(handle, self.vectors, allow_pickle=False)
        return {
            "records": POOL_RECORDS,
            "vectors": POOL_VECTORS,
            "embedder": self.embedder.name,
            "lang": self.lang,
            "size": len(self.records),
        }

    @classmethod
    def load(
        cls, directory: str | Path, saved: dict, embedder: Embedder | None = None, show_progress: bool = False
    ) -> ExamplePool:
        """The pool :meth:`save` wrote to ``directory`` (``saved``: its return value). Its embeddings are
        reused with the embedder it was saved with (queries are embedded by it); another ``embedder``
        embeds the records again. No progress bars unless ``show_progress`` (it serves inference calls)."""
        directory = Path(directory)
        lang = saved.get("lang") or "en"
        records = load_records(directory / saved.get("records", POOL_RECORDS), "rait")
        name = saved.get("embedder")
        if embedder is not None and embedder.name != name:
            return cls(records, embedder, lang=lang, show_progress=show_progress)
        path = directory / saved.get("vectors", POOL_VECTORS)
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(path, f"cannot read the pool's embeddings ({exc})") from None
        if vectors.ndim != 2 or len(vectors) != len(records):
            raise DataError(
                path, f"expected {len(records)} rows of embeddings, one per record in {POOL_RECORDS}"
            )
        embedder = embedder or get_embedder(name, lang)
        return cls(records, embedder, lang=lang, vectors=vectors, show_progress=show_progress)

    # -- lazily built parts ------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(None, self.lang)
        return self._embedder

    @contextmanager
    def _timed(self, what: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[what] += time.perf_counter() - start

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._timed("embed"):
            return self.embedder.encode(list(texts), show_progress=self.show_progress)

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = self._embed([r.text for r in self.records])
        return self._vectors

    @property
    def bm25(self) -> BM25Index:
        if self._bm25 is None:
            with self._timed("bm25"):
                self._bm25 = BM25Index(
                    [r.text for r in self.records],
                    self.lang,
                    self.stopwords,
                    show_progress=self.show_progress,
                )
        return self._bm25

    def _neighbours(
        self, query_vectors: np.ndarray, query_groups: np.ndarray, K: int, allowed: np.ndarray | None
    ) -> np.ndarray:
        """Pool indices of the K nearest allowed records per query. The faiss index holds the pool in
        id order, so ties (and everything else) do not depend on the order of the records."""
        vectors = self.vectors
        with self._timed("knn"):
            if allowed is None:
                keep = self._order
                if self._index is None:
                    self._index = build_index(vectors[keep], self.index_kind)
                index = self._index
            else:
                keep = self._order[allowed[self._order]]
                index = build_index(vectors[keep], self.index_kind)
            found, _ = knn_search(
                index,
                query_vectors,
                K,
                pool_groups=self.groups[keep],
                query_groups=query_groups,
                show_progress=self.show_progress,
            )
        return np.where(found >= 0, keep[np.maximum(found, 0)], -1)

    # -- selection ---------------------------------------------------------------------------------

    def _select(
        self,
        seeds: Sequence[str],
        query_groups: np.ndarray,
        query_vectors: Callable[[np.ndarray], np.ndarray],
        query_terms: Callable[[np.ndarray], sp.csr_matrix],
        *,
        k: int,
        strategy: str,
        K: int,
        bm25_threshold: float,
        mixed_ratio: float,
        seed: int,
        exclude_ids: Iterable[str] | None,
    ) -> list[list[int]]:
        check_options(k, strategy, K, mixed_ratio)
        n = len(seeds)
        chosen: list[list[int]] = [[] for _ in range(n)]
        allowed = None
        if exclude_ids is not None:
            banned = set(exclude_ids)
            allowed = np.array([r.id not in banned for r in self.records], dtype=bool)
        n_allowed = len(self.records) if allowed is None else int(allowed.sum())
        if n == 0 or k == 0 or n_allowed == 0:
            return chosen

        if strategy == "random":
            nn_rows, random_rows = np.zeros(0, np.int64), np.arange(n)
        elif strategy == "mixed_nn":
            nn_rows = mixed_nn_rows(seeds, mixed_ratio, seed)
            random_rows = np.setdiff1d(np.arange(n), nn_rows)
        else:
            nn_rows, random_rows = np.arange(n), np.zeros(0, np.int64)

        if len(nn_rows):
            diverse = strategy.startswith("dnn")
            found = self._neighbours(
                query_vectors(nn_rows), query_groups[nn_rows], K if diverse else k, allowed
            )
            for row, candidates in zip(nn_rows, found, strict=True):
                candidates = [int(c) for c in candidates if c >= 0]
                if diverse:
                    picked = random.Random(f"{seed}:{seeds[row]}").sample(candidates, min(k, len(candidates)))
                else:
                    picked = candidates[:k]
                chosen[row] = picked
            if strategy.endswith("_bm25"):
                self._bm25_filter(chosen, nn_rows, query_terms, k, bm25_threshold)

        for row in random_rows:
            chosen[row] = self._random_examples(
                random.Random(f"{seed}:{seeds[row]}"), int(query_groups[row]), k, allowed, n_allowed
            )
        return chosen

    def _bm25_filter(
        self,
        chosen: list[list[int]],
        rows: np.ndarray,
        query_terms: Callable[[np.ndarray], sp.csr_matrix],
        k: int,
        threshold: float,
    ) -> None:
        index = self.bm25
        candidates = np.full((len(rows), k), -1, dtype=np.int64)
        for i, row in enumerate(rows):
            candidates[i, : len(chosen[row])] = chosen[row]
        with self._timed("bm25"):
            scores = index.score(query_terms(rows), candidates, show_progress=self.show_progress)
        for i, row in enumerate(rows):
            chosen[row] = [c for c, s in zip(chosen[row], scores[i], strict=False) if s >= threshold]

    def _random_examples(
        self, rng: random.Random, group: int, k: int, allowed: np.ndarray | None, n_allowed: int
    ) -> list[int]:
        n_pool = len(self.records)
        own = set(self._members()[group]) if group >= 0 else set()
        if allowed is not None:
            own = {i for i in own if allowed[i]}
        eligible_count = n_allowed - len(own)
        if eligible_count <= 0:
            return []
        order = self._order  # draw positions in id order, so picks do not depend on record order
        if eligible_count < max(2 * k, n_pool // 2):  # rejection sampling would be slow: list them
            eligible = [int(i) for i in order if i not in own and (allowed is None or allowed[i])]
            return rng.sample(eligible, min(k, len(eligible)))
        picked: dict[int, None] = {}
        while len(picked) < k:
            i = int(order[rng.randrange(n_pool)])
            if i not in own and (allowed is None or allowed[i]):
                picked.setdefault(i)
        return list(picked)

    def _members(self) -> list[list[int]]:
        """Pool indices per text group."""
        if self._group_members is None:
            self._group_members = [[] for _ in self._group_of_text]
            for i, group in enumerate(self.groups):
                self._group_members[group].append(i)
        return self._group_members

    # -- public API --------------------------------------------------------------------------------

    def self_retrieve(
        self,
        k: int = DEFAULT_NUM_EXAMPLES,
        strategy: str = "nn",
        *,
        K: int = DEFAULT_K,
        bm25_threshold: float = DEFAULT_BM25_THRESHOLD,
        mixed_ratio: float = DEFAULT_MIXED_RATIO,
        seed: int = DEFAULT_SEED,
    ) -> list[list[int]]:
        """Examples for every pool record from the other records (RA-IT training data): row i holds
        pool indices; seeded by ``seed`` + record id."""
        return self._select(
            [r.id for r in self.records],
            self.groups,
            lambda rows: self.vectors[rows],
            lambda rows: self.bm25.doc_terms[rows],
            k=k,
            strategy=strategy,
            K=K,
            bm25_threshold=bm25_threshold,
            mixed_ratio=mixed_ratio,
            seed=seed,
            exclude_ids=None,
        )

    def retrieve_indices(
        self,
        texts: Sequence[str],
        k: int = DEFAULT_NUM_EXAMPLES,
        strategy: str = "nn",
        *,
        K: int = DEFAULT_K,
        bm25_threshold: float = DEFAULT_BM25_THRESHOLD,
        mixed_ratio: float = DEFAULT_MIXED_RATIO,
        seed: int = DEFAULT_SEED,
        exclude_ids: Iterable[str] | None = None,
        query_ids: Sequence[str] | None = None,
        exclude_identical: bool = True,
    ) -> list[list[int]]:
        """Like :meth:`retrieve`, returning pool indices."""
        texts = list(texts)
        if query_ids is not None and len(query_ids) != len(texts):
            raise RaitError(f"{len(query_ids)} query ids given for {len(texts)} texts")
        seeds = list(query_ids) if query_ids is not None else texts
        group_of = self._group_of_text if exclude_identical else {}
        groups = np.array([group_of.get(t, -1) for t in texts], dtype=np.int64)
        return self._select(
            seeds,
            groups,
            lambda rows: self._embed([texts[i] for i in rows]),
            lambda rows: self.bm25.query_matrix([texts[i] for i in rows]),
            k=k,
            strategy=strategy,
            K=K,
            bm25_threshold=bm25_threshold,
            mixed_ratio=mixed_ratio,
            seed=seed,
            exclude_ids=exclude_ids,
        )

    def retrieve(
        self,
        texts: Sequence[str],
        k: int = DEFAULT_NUM_EXAMPLES,
        strategy: str = "nn",
        *,
        K: int = DEFAULT_K,
        bm25_threshold: float = DEFAULT_BM25_THRESHOLD,
        mixed_ratio: float = DEFAULT_MIXED_RATIO,
        seed: int = DEFAULT_SEED,
        exclude_ids: Iterable[str] | None = None,
        query_ids: Sequence[str] | None = None,
        exclude_identical: bool = True,
    ) -> list[list[Record]]:
        """Up to ``k`` example records per query text (fewer after the BM25 filter; none from an empty
        pool). Pool records with exactly the query's text (unless ``exclude_identical`` is False, the
        RA-IT reference's behaviour, which leaks the gold of a test passage that is also in the pool) and
        those whose id is in ``exclude_ids`` are never returned. Per-query sampling is seeded by ``seed``
        + ``query_ids[i]`` (default: the text)."""
        found = self.retrieve_indices(
            texts,
            k,
            strategy,
            K=K,
            bm25_threshold=bm25_threshold,
            mixed_ratio=mixed_ratio,
            seed=seed,
            exclude_ids=exclude_ids,
            query_ids=query_ids,
            exclude_identical=exclude_identical,
        )
        return [[self.records[i] for i in row] for row in found]
