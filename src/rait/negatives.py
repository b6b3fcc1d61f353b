"""A product recipe for negative (absent) entity types: a fixed number or ratio of negatives per passage,
drawn by type frequency and/or *hard* (the absent types whose names are closest to the passage's present
types by embedding). The paper's rule stays :class:`rait.templates.NegativeTypeSampler`.

Benchmarks ask every type of their label set, so most questions have an empty answer; the paper's rule
asks about one negative per two present types. This recipe lets training ask as many as the test does."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from rait.records import DEFAULT_SEED, Record
from rait.templates import NegativeTypeSampler

NEGATIVE_SAMPLINGS = ("frequency", "hard", "mixed")
DEFAULT_HARD_POOL = 32  # hard negatives are drawn from this many nearest absent types


def _rng(seed: int, record_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class NegativeRecipe(NegativeTypeSampler):
    """``count`` negatives per passage, or ``ratio`` x its present types (stochastically rounded), each
    type at most once and never a present one, shuffled with the present types.

    ``sampling``: ``frequency`` (weighted by mention counts over the whole dataset, without replacement),
    ``hard`` (uniformly from the ``hard_pool`` absent types nearest to any present type, by cosine of the
    rows of ``type_vectors``, L2-normalised, aligned with :attr:`types`; a passage without present types
    falls back to frequency) or ``mixed`` (half of them hard, rounded up, the rest by frequency). Seeded per
    record (``seed`` + record id), as the paper's rule."""

    def __init__(
        self,
        type_counts: Counter[str],
        seed: int = DEFAULT_SEED,
        *,
        count: int | None = None,
        ratio: float | None = None,
        sampling: str = "frequency",
        type_vectors: np.ndarray | None = None,
        hard_pool: int = DEFAULT_HARD_POOL,
    ):
        super().__init__(type_counts, seed)
        if (count is None) == (ratio is None):
            raise ValueError("give exactly one of count and ratio")
        if (count is not None and count < 0) or (ratio is not None and ratio < 0):
            raise ValueError("the number of negatives must not be negative")
        if sampling not in NEGATIVE_SAMPLINGS:
            raise ValueError(f"unknown negative sampling {sampling!r}; choose one of {NEGATIVE_SAMPLINGS}")
        if sampling != "frequency" and (type_vectors is None or len(type_vectors) != len(self.types)):
            raise ValueError(f"{sampling} negatives need one vector per type")
        if hard_pool < 1:
            raise ValueError(f"hard_pool must be positive, got {hard_pool}")
        self.count, self.ratio, self.sampling, self.hard_pool = count, ratio, sampling, hard_pool
        self.vectors = type_vectors
        self.index = {t: i for i, t in enumerate(self.types)}
        self.frequency = np.asarray(self.weights, dtype=np.float64)

    def question_types(self, record: Record) -> list[str]:
        positives = list(dict.fromkeys(m.type for m in record.mentions))
        rng = _rng(self.seed, record.id)
        if self.count is not None:
            wanted = self.count
        else:
            wanted = int(np.floor(self.ratio * len(positives) + rng.random()))
        absent = np.ones(len(self.types), dtype=bool)
        anchors = [self.index[t] for t in positives if t in self.index]
        absent[anchors] = False
        wanted = min(wanted, int(absent.sum()))
        hard = {"frequency": 0, "hard": wanted, "mixed": (wanted + 1) // 2}[self.sampling] if anchors else 0
        chosen = self._hard(anchors, absent, hard, rng) if hard else []
        absent[chosen] = False
        chosen += self._by_frequency(absent, wanted - len(chosen), rng)
        types = positives + [self.types[i] for i in chosen]
        return [types[i] for i in rng.permutation(len(types))]

    def _hard(self, anchors: list[int], absent: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
        similarity = (self.vectors[anchors] @ self.vectors.T).max(axis=0)
        candidates = np.flatnonzero(absent)
        order = np.argsort(-similarity[candidates], kind="stable")[: max(self.hard_pool, n)]
        nearest = candidates[order]
        return [int(i) for i in rng.choice(nearest, size=min(n, len(nearest)), replace=False)]

    def _by_frequency(self, absent: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
        """``n`` absent types weighted by frequency, without replacement (Efraimidis-Spirakis keys)."""
        if n <= 0:
            return []
        candidates = np.flatnonzero(absent)
        keys = np.log(rng.random(len(candidates))) / self.frequency[candidates]
        return [int(i) for i in candidates[np.argsort(-keys, kind="stable")[:n]]]
