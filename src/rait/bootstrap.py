"""Bootstrap confidence intervals for micro-F1 over test sentences, and paired differences between models.

A benchmark's score is micro-F1 of its sentences' summed counts (correct, predicted, gold), as in
:mod:`rait.evaluation`. One bootstrap replicate draws the benchmark's n sentences with replacement — the same
draw for every model, so differences between models are paired — and recomputes each model's F1 from the
drawn sentences; a model trained with several seeds gets the mean of its seeds' F1s, and its replicates
also draw its seeds with replacement (a two-level bootstrap: training runs and sentences), one draw per
replicate shared by all benchmarks, since a seed's model answers every benchmark. The average over
benchmarks draws every benchmark independently (a stratified bootstrap) and takes the mean of the replicate
F1s. Intervals are percentile intervals. The p-value of a difference ``d`` is two-sided: the share of
replicates with ``|d* - d| >= |d|``, i.e. the bootstrap distribution shifted to the null hypothesis of no
difference (Berg-Kirkpatrick et al., 2012). The draws of a benchmark depend only on the seed, the benchmark's
name and its number of sentences, so a model's interval does not change when other models are added."""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_SAMPLES = 10_000
DEFAULT_SEED = 0
LEVEL = 0.95
_EPS = 1e-10  # as rait.evaluation
_CHUNK = 4_000_000  # replicate x sentence weights drawn at a time

SentenceCounts = Mapping[str, Sequence[int]]  # sentence id -> [n_correct, n_pred, n_gold]


def micro_f1(counts: np.ndarray) -> np.ndarray:
    """F1 in percent of ``[..., (n_correct, n_pred, n_gold)]`` counts, with rait.evaluation's smoothing."""
    correct, predicted, gold = counts[..., 0], counts[..., 1], counts[..., 2]
    precision, recall = correct / (predicted + _EPS), correct / (gold + _EPS)
    return 100 * 2 * precision * recall / (precision + recall + _EPS)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its percentile interval; ``p`` (differences only) is the two-sided p-value."""

    value: float
    low: float
    high: float
    p: float | None = None


def _percentiles(replicates: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


class BootstrapF1:
    """Replicate F1s of several models (any hashable keys) on shared resamples of each benchmark's sentences.

    ``runs[key][benchmark]`` is a list of per-sentence counts, one per training seed. Every run of a
    benchmark must cover the same sentence ids; a (model, benchmark) whose runs do not match the first-seen
    id set of that benchmark gets no replicates (its intervals are ``None``)."""

    def __init__(
        self,
        runs: Mapping[Hashable, Mapping[str, Sequence[SentenceCounts]]],
        *,
        samples: int = DEFAULT_SAMPLES,
        seed: int = DEFAULT_SEED,
    ):
        if samples < 1:
            raise ValueError(f"bootstrap samples must be at least 1, got {samples}")
        self.samples, self.seed = samples, seed
        self.point: dict[tuple[Hashable, str], float] = {}
        self.replicates: dict[tuple[Hashable, str], np.ndarray] = {}
        self._draws: dict[tuple[Hashable, int], np.ndarray] = {}
        benchmarks = list(dict.fromkeys(b for per in runs.values() for b in per))
        for benchmark in benchmarks:
            self._benchmark(benchmark, {key: per[benchmark] for key, per in runs.items() if benchmark in per})

    def _benchmark(self, benchmark: str, runs: Mapping[Hashable, Sequence[SentenceCounts]]) -> None:
        ids: list[str] | None = None
        arrays: dict[Hashable, np.ndarray] = {}  # key -> (seeds, sentences, 3)
        for key, seeds in runs.items():
            if not seeds:
                continue
            ids = ids if ids is not None else sorted(seeds[0])
            if any(sorted(counts) != ids for counts in seeds):
                continue
            arrays[key] = np.array([[counts[i] for i in ids] for counts in seeds], dtype=np.float64)
            self.point[key, benchmark] = float(micro_f1(arrays[key].sum(axis=1)).mean())
        if not arrays or not ids:
            return
        n = len(ids)
        rng = np.random.default_rng([self.seed, zlib.crc32(benchmark.encode()), n])
        chunk = max(1, _CHUNK // n)
        parts: dict[Hashable, list[np.ndarray]] = {key: [] for key in arrays}
        for start in range(0, self.samples, chunk):
            size = min(chunk, self.samples - start)
            weights = rng.multinomial(n, np.full(n, 1 / n), size=size)
            for key, counts in arrays.items():
                f1 = micro_f1(np.einsum("bn,snc->sbc", weights, counts))  # (seeds, replicates)
                if len(f1) > 1:
                    f1 = np.take_along_axis(f1, self._seed_draws(key, len(f1))[:, start : start + size], 0)
                parts[key].append(f1.mean(axis=0))
        for key, chunks in parts.items():
            self.replicates[key, benchmark] = np.concatenate(chunks)

    def _seed_draws(self, key: Hashable, seeds: int) -> np.ndarray:
        """(seeds, samples) seed indices drawn with replacement for ``key``'s replicates, the same for every
        benchmark of ``key``."""
        if (key, seeds) not in self._draws:
            rng = np.random.default_rng([self.seed, zlib.crc32(repr(key).encode()), seeds])
            self._draws[key, seeds] = rng.integers(0, seeds, size=(seeds, self.samples))
        return self._draws[key, seeds]

    def _average(self, key: Hashable, benchmarks: Sequence[str]) -> tuple[float, np.ndarray] | None:
        if not benchmarks or any((key, b) not in self.replicates for b in benchmarks):
            return None
        point = float(np.mean([self.point[key, b] for b in benchmarks]))
        return point, np.mean([self.replicates[key, b] for b in benchmarks], axis=0)

    def _get(self, key: Hashable, benchmark: str | Sequence[str]) -> tuple[float, np.ndarray] | None:
        """Point and replicates of one benchmark (a name) or of the mean over several (a sequence)."""
        if isinstance(benchmark, str):
            if (key, benchmark) not in self.replicates:
                return None
            return self.point[key, benchmark], self.replicates[key, benchmark]
        return self._average(key, benchmark)

    def interval(self, key: Hashable, benchmark: str | Sequence[str]) -> Estimate | None:
        """F1 and its interval on one benchmark, or on the mean over a sequence of benchmarks."""
        found = self._get(key, benchmark)
        if found is None:
            return None
        return Estimate(found[0], *_percentiles(found[1]))

    def difference(self, key: Hashable, other: Hashable, benchmark: str | Sequence[str]) -> Estimate | None:
        """F1 of ``key`` minus F1 of ``other`` on the same resampled sentences: interval and p-value."""
        a, b = self._get(key, benchmark), self._get(other, benchmark)
        if a is None or b is None:
            return None
        delta, replicates = a[0] - b[0], a[1] - b[1]
        p = float(np.mean(np.abs(replicates - delta) >= abs(delta) - 1e-9))
        return Estimate(delta, *_percentiles(replicates), p=p)
