"""Bootstrap intervals and paired differences on fabricated per-sentence counts with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from rait.bootstrap import BootstrapF1, micro_f1
from rait.evaluation import BenchmarkScore

N = 400


def bernoulli(correct: set[int], n: int = N) -> dict[str, list[int]]:
    """n sentences with one gold and one predicted mention each, right on the sentences in ``correct``:
    micro-F1 is then 100 x the share right, a mean of 0/1 values."""
    return {f"s{i:03d}": [int(i in correct), 1, 1] for i in range(n)}


HALF = set(range(0, N, 2))  # 200 of 400 right: F1 50


def test_micro_f1_is_the_evaluation_metric():
    counts = np.array([[2, 3, 4], [0, 0, 0], [0, 5, 0], [7, 7, 7]], dtype=float)
    expected = [BenchmarkScore("x", 1, int(g), int(p), int(c), 0).f1 for c, p, g in counts]
    assert micro_f1(counts) == pytest.approx(expected, abs=1e-9)


def test_interval_of_a_mean_of_zeros_and_ones_matches_the_normal_approximation():
    estimate = BootstrapF1({"m": {"b": [bernoulli(HALF)]}}, seed=3).interval("m", "b")
    # standard error 100 * sqrt(0.5 * 0.5 / 400) = 2.5, so about 50 -/+ 1.96 * 2.5
    assert estimate.value == pytest.approx(50.0)
    assert estimate.low == pytest.approx(50 - 1.96 * 2.5, abs=0.6)
    assert estimate.high == pytest.approx(50 + 1.96 * 2.5, abs=0.6)


def test_identical_sentences_give_a_zero_width_interval():
    counts = {f"s{i}": [1, 2, 2] for i in range(50)}
    estimate = BootstrapF1({"m": {"b": [counts]}}, samples=500).interval("m", "b")
    assert (estimate.low, estimate.high) == pytest.approx((50.0, 50.0))


def test_identical_models_differ_by_zero_with_p_one():
    boot = BootstrapF1({"a": {"b": [bernoulli(HALF)]}, "v": {"b": [bernoulli(HALF)]}}, samples=2000)
    diff = boot.difference("a", "v", "b")
    assert (diff.value, diff.low, diff.high, diff.p) == pytest.approx((0.0, 0.0, 0.0, 1.0))


def test_one_sentence_better_has_the_analytic_p_value():
    # RA-IT right on one more sentence: the difference on a resample is 0.25 x (times that sentence was
    # drawn), m ~ Binomial(400, 1/400); |d* - d| >= |d| unless m = 1, so p = 1 - (1 - 1/400) ** 399.
    boot = BootstrapF1({"ra": {"b": [bernoulli(HALF | {1})]}, "v": {"b": [bernoulli(HALF)]}}, seed=5)
    diff = boot.difference("ra", "v", "b")
    assert diff.value == pytest.approx(0.25)
    assert diff.p == pytest.approx(1 - (1 - 1 / N) ** (N - 1), abs=0.02)
    assert diff.low == pytest.approx(0.0) and diff.high in (pytest.approx(0.5), pytest.approx(0.75))


def test_a_clear_difference_is_significant_and_paired():
    better = HALF | set(range(1, 200, 2))  # 100 more sentences right: +25 points
    boot = BootstrapF1({"ra": {"b": [bernoulli(better)]}, "v": {"b": [bernoulli(HALF)]}}, samples=5000)
    diff = boot.difference("ra", "v", "b")
    assert diff.value == pytest.approx(25.0) and diff.p == 0.0 and diff.low > 20
    # paired: the difference's interval is narrower than the two models' intervals side by side allow
    ra, v = boot.interval("ra", "b"), boot.interval("v", "b")
    assert diff.high - diff.low < (ra.high - ra.low) + (v.high - v.low)
    # replicates share the resamples: the difference's replicates are the models' replicates' difference
    assert (boot.replicates["ra", "b"] >= boot.replicates["v", "b"]).all()


def test_seeds_are_averaged_and_resampled_on_shared_sentence_resamples():
    """A model of two seeds: its point is their mean; each replicate draws the seeds with replacement (both
    the first, both the second, or one of each) on the same resampled sentences, the same draw on every
    benchmark; so its interval also carries the spread between seeds."""
    one, two = bernoulli(HALF), bernoulli(set(range(100)))
    runs = {
        "s1": {"b": [one], "c": [one]},
        "s2": {"b": [two], "c": [two]},
        "both": {"b": [one, two], "c": [one, two]},
    }
    boot = BootstrapF1(runs, samples=300)
    assert boot.point["both", "b"] == pytest.approx((50.0 + 25.0) / 2)
    kinds = []
    for bench in ("b", "c"):
        s1, s2, both = (boot.replicates[key, bench] for key in ("s1", "s2", "both"))
        options = np.stack([s1, s2, (s1 + s2) / 2])
        matches = np.isclose(options, both)
        assert matches.any(axis=0).all()
        kinds.append(matches.argmax(axis=0))
    np.testing.assert_array_equal(kinds[0], kinds[1])  # one draw of seeds per replicate for all benchmarks
    assert set(kinds[0]) == {0, 1, 2}
    mean_only = (boot.replicates["s1", "b"] + boot.replicates["s2", "b"]) / 2
    both = boot.interval("both", "b")
    assert both.high - both.low > np.percentile(mean_only, 97.5) - np.percentile(mean_only, 2.5) + 10


def test_average_over_benchmarks_resamples_each_benchmark():
    runs = {"m": {"x": [bernoulli(HALF)], "y": [bernoulli(set(range(300)), n=300)]}}
    boot = BootstrapF1(runs, samples=1000)
    average = boot.interval("m", ["x", "y"])
    assert average.value == pytest.approx((50.0 + 100.0) / 2)
    # y is right everywhere (no spread): the average's spread is half of x's
    x = boot.interval("m", "x")
    assert average.high - average.low == pytest.approx((x.high - x.low) / 2)
    assert boot.interval("m", ["x", "z"]) is None


def test_seeded_and_independent_of_other_models():
    alone = BootstrapF1({"m": {"b": [bernoulli(HALF)]}}, samples=1000, seed=7)
    crowded = BootstrapF1(
        {"other": {"b": [bernoulli(set(range(50)))]}, "m": {"b": [bernoulli(HALF)]}}, samples=1000, seed=7
    )
    np.testing.assert_array_equal(alone.replicates["m", "b"], crowded.replicates["m", "b"])
    reseeded = BootstrapF1({"m": {"b": [bernoulli(HALF)]}}, samples=1000, seed=8)
    assert not np.array_equal(alone.replicates["m", "b"], reseeded.replicates["m", "b"])


def test_runs_on_other_sentences_get_no_interval():
    other = {f"t{i}": [1, 1, 1] for i in range(N)}
    boot = BootstrapF1({"a": {"b": [bernoulli(HALF)]}, "c": {"b": [other]}}, samples=100)
    assert boot.interval("a", "b") is not None
    assert boot.interval("c", "b") is None and boot.difference("a", "c", "b") is None
    with pytest.raises(ValueError, match="at least 1"):
        BootstrapF1({}, samples=0)
