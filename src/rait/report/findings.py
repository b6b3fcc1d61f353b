"""The paper's findings checked against an experiment's results: a row per comparison the results hold, with
the paired difference of average F1, its interval, and whether it points the paper's way.

Each finding says that one setting beats another (Xie et al., the figure or table it comes from); only the
findings the paper states are listed (its abstract and summary: RA-IT beats vanilla IT across data sizes
and in both languages, similar examples are what helps in training, in-domain examples help at inference,
BM25 filtering makes out-domain examples useful, more data gives more F1). Comparisons use the paper's
protocol, free decoding. With several training runs of a setting the interval resamples runs and sentences
(:mod:`rait.bootstrap`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rait.bootstrap import Estimate
from rait.report.scores import Scores, Setting, _strategy
from rait.report.views import View
from rait.retrieval import DEFAULT_NUM_EXAMPLES

Pair = tuple[str, Setting, Setting]  # (what is compared, the setting the paper finds better, its baseline)


class Finding(NamedTuple):
    source: str  # the paper's figure or table
    claim: str  # the paper's finding, in short
    pairs: Callable[[Scores], list[Pair]]  # the comparisons that test it in a results table


def _method_pairs(scores: Scores) -> list[Pair]:
    """RA-IT as the paper's main tables train it (NN, k=2) against vanilla IT of the same size, no
    examples."""
    return [
        (f"{r.size:,} passages, RA-IT ({_strategy(r.strategy)}, k={r.k}) - vanilla IT", r, v)
        for r, v in scores.pairs()
        if r.mode == "none" and r.decoding == "free" and r.strategy == "nn" and r.k == DEFAULT_NUM_EXAMPLES
    ]


def _size_pairs(scores: Scores) -> list[Pair]:
    """Each model trained on more passages against the same recipe on the fewest, no examples."""
    found = []
    models = {s._replace(size=None) for s in scores.settings(mode="none") if s.method != "base"}
    for recipe in sorted(models, key=lambda s: (s.method, s.strategy or "", s.k or 0)):
        sizes = sorted(s.size for s in scores.settings(mode="none") if s._replace(size=None) == recipe)
        for size in sizes[1:]:
            label = f"{recipe.model_label}: {size:,} - {sizes[0]:,} passages"
            found.append((label, recipe._replace(size=size), recipe._replace(size=sizes[0])))
    return found


def _similar_pairs(scores: Scores) -> list[Pair]:
    """RA-IT trained with the nearest examples against random ones (same size and k), no examples."""
    found = []
    for s in scores.settings(method="ra-it", strategy="nn", mode="none"):
        control = s._replace(strategy="random")
        if control in scores.f1:
            found.append((f"{s.size:,} passages, k={s.k}: NN - Random examples in training", s, control))
    return found


def _in_domain_pairs(scores: Scores) -> list[Pair]:
    """Each RA-IT model with in-domain examples from its largest pool against no examples."""
    found = []
    for model in scores.settings(method="ra-it", mode="none"):
        pools = [s for s in scores.settings(mode="in-domain") if s.without_examples == model]
        if pools:
            best = max(pools, key=lambda s: s.pool_size or 0)
            label = f"{model.sized_label}: in-domain N={best.pool_size:,} - no examples"
            found.append((label, best, model))
    return found


def _bm25_pairs(scores: Scores) -> list[Pair]:
    """Each RA-IT model's out-domain examples retrieved with the BM25 filter against no examples and
    against the same retrieval without the filter."""
    found = []
    for s in scores.settings(method="ra-it", mode="out-domain"):
        if s.inference_strategy not in ("nn_bm25", "dnn_bm25"):
            continue
        plain = s._replace(inference_strategy=s.inference_strategy.removesuffix("_bm25"))
        name = _strategy(s.inference_strategy)
        if s.without_examples in scores.f1:
            found.append((f"{s.sized_label}: out-domain {name} - no examples", s, s.without_examples))
        if plain in scores.f1:
            found.append(
                (f"{s.sized_label}: out-domain {name} - {_strategy(plain.inference_strategy)}", s, plain)
            )
    return found


FINDINGS = (
    Finding(
        "Table 1 / Table 2", "RA-IT beats vanilla IT across data sizes, in English and Chinese", _method_pairs
    ),
    Finding("Fig. 2 / Table 6", "more training data gives higher F1, for both methods", _size_pairs),
    Finding("Fig. 3", "similar (NN) examples in training beat random ones", _similar_pairs),
    Finding("Fig. 4", "out-domain examples at inference are useful with the BM25 filter", _bm25_pairs),
    Finding("Fig. 5", "in-domain examples at inference help", _in_domain_pairs),
)


def direction(delta: float, estimate: Estimate | None) -> str:
    """Whether ``delta`` (the paper's better setting minus its baseline) points the paper's way, and whether
    its interval excludes zero."""
    same = "yes" if delta > 0 else "no"
    if estimate is None:
        return f"{same} (no interval)"
    clear = estimate.low > 0 or estimate.high < 0
    return same if clear else f"{same}, not clear of zero"


def finding_rows(scores: Scores) -> list[dict]:
    """Every comparison of :data:`FINDINGS` that ``scores`` holds: ``source``, ``claim``, ``comparison``,
    ``difference`` (average F1, the paper's better setting minus its baseline), ``low`` and ``high`` (its
    paired-bootstrap interval, None without one) and ``same_direction`` (:func:`direction`)."""
    rows = []
    for finding in FINDINGS:
        for label, better, baseline in finding.pairs(scores):
            a, b = scores.average(better), scores.average(baseline)
            if a is None or b is None:
                continue
            estimate = scores.difference(better, baseline)
            rows.append(
                {
                    "source": finding.source,
                    "claim": finding.claim,
                    "comparison": label,
                    "difference": a - b,
                    "low": None if estimate is None else estimate.low,
                    "high": None if estimate is None else estimate.high,
                    "same_direction": direction(a - b, estimate),
                }
            )
    return rows


def findings(scores: Scores) -> View | None:
    """The paper's findings (:data:`FINDINGS`) that ``scores`` can test, a row per comparison; None when it
    can test none."""
    rows = finding_rows(scores)
    if not rows:
        return None
    view = View("findings", "The paper's findings at this scale (free decoding, average F1)")
    header = ["Paper", "Finding", "Comparison", "Δ average F1", "95% CI", "Same direction?"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|---:|---|---|"]
    for row in rows:
        interval = "—" if row["low"] is None else f"[{row['low']:.2f}, {row['high']:.2f}]"
        cells = [row["source"], row["claim"], row["comparison"], f"{row['difference']:+.2f}", interval]
        lines.append("| " + " | ".join([*cells, row["same_direction"]]) + " |")
    view.markdown = "\n".join(lines) + "\n"
    return view
