"""``scores.json``: the report's numbers, machine-readable. Per setting (model x inference mode x decoding,
as the tables show them) F1 per benchmark and on average with its 95% bootstrap interval, and precision,
recall and answer counts per benchmark; per RA-IT / vanilla IT pair of the paired-difference view, per two
decodings of one model, per two training retrieval strategies and per inference setting with examples
against none, the differences with their interval and p-value. The same results, samples and seed give the
same bytes."""

from __future__ import annotations

from statistics import mean

from rait.bootstrap import DEFAULT_SAMPLES, DEFAULT_SEED, LEVEL, Estimate
from rait.report.findings import finding_rows
from rait.report.scores import Scores, Setting, _decoding_order, _inference_order, _model_order

SCORES_JSON = "scores.json"
INTERVAL_METHOD = "95% percentile bootstrap over test sentences"


def scores_json(results: dict, *, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> dict:
    """The content of ``scores.json`` for an experiment's results (``samples`` resamples drawn with ``seed``;
    intervals only where the results have per-sentence counts, ``interval`` is None without any).

    ``settings``: one entry per setting, its :class:`Setting` fields, ``model_label``, ``inference_label``,
    ``cells`` (the results' model names, one per training seed), ``benchmarks`` (name -> ``f1``, ``low``,
    ``high``, ``precision``, ``recall``, averaged over seeds, and ``n_queries``, ``n_unparseable`` summed
    over seeds) and ``average`` (``f1``, ``low``, ``high``; None unless every benchmark is scored).
    ``differences``: per pair of :meth:`Scores.pairs`, ``setting`` minus ``baseline`` per benchmark and on
    average: ``f1``, ``baseline_f1``, ``difference``, ``low``, ``high``, ``p``. ``low``, ``high`` and ``p``
    are left out where there is no interval. ``decoding_differences``: the same per pair of
    :meth:`Scores.decoding_pairs` (one decoding minus another, same model and inference settings);
    ``strategy_differences``: per pair of :meth:`Scores.strategy_pairs` (one training retrieval strategy
    minus another, RA-IT, same size, k, inference settings and decoding); ``example_differences``: per
    pair of :meth:`Scores.example_pairs` (examples at inference minus none, same model and decoding);
    ``recipe_differences``: per pair of :meth:`Scores.recipe_pairs` (a named training recipe minus the
    plain one); each setting names its ``recipe`` where it has one;
    ``findings``: the paper's findings the results test (:func:`rait.report.findings.finding_rows`)."""
    return _scores_json(results, Scores(results, samples=samples, seed=seed))


def _scores_json(results: dict, scores: Scores, baseline: str | None = None) -> dict:
    """:func:`scores_json` from an already computed :class:`Scores` (the report's); with ``baseline`` (a
    model's name) also ``baseline_differences``: every setting minus that model without examples, per pair of
    :meth:`Scores.baseline_pairs`, and ``baseline`` itself."""
    bootstrap = scores.bootstrap
    interval = (
        None
        if bootstrap is None
        else {"method": INTERVAL_METHOD, "level": LEVEL, "samples": bootstrap.samples, "seed": bootstrap.seed}
    )
    found = {
        "experiment": results.get("experiment", ""),
        "protocol": results.get("protocol"),
        "max_examples": results.get("max_examples"),
        "complete": results.get("complete", True),
        "interval": interval,
        "benchmarks": scores.benchmarks,
        "settings": [_setting_scores(scores, s) for s in sorted(scores.f1, key=_order)],
        "differences": [_differences(scores, a, b) for a, b in scores.pairs()],
        "decoding_differences": [_differences(scores, a, b) for a, b in scores.decoding_pairs()],
        "strategy_differences": [_differences(scores, a, b) for a, b in scores.strategy_pairs()],
        "example_differences": [_differences(scores, a, b) for a, b in scores.example_pairs()],
        "recipe_differences": [_differences(scores, a, b) for a, b in scores.recipe_pairs()],
        "findings": finding_rows(scores),
    }
    if baseline is not None:
        found["baseline"] = baseline
        found["baseline_differences"] = [
            _differences(scores, a, b) for a, b in scores.baseline_pairs(baseline)
        ]
    if spread := scores.seed_spread():  # only for models trained more than once
        found["seed_spread"] = [
            {
                **_describe(s),
                "runs": runs,
                "mean": average,
                "sd": sd,
                "average": _interval(average, scores.interval(s)),
            }
            for s, runs, average, sd in spread
        ]
    return found


def _order(setting: Setting) -> tuple:
    """Free decoding first, then by model, inference mode and its settings."""
    return (*_decoding_order(setting.decoding), _model_order(setting), *_inference_order(setting))


def _describe(setting: Setting) -> dict:
    fields = setting._asdict()
    if not setting.recipe:  # the plain recipe: results from before recipes read as they did
        del fields["recipe"]
    return {
        **fields,
        "model_label": setting.model_label,
        "inference_label": setting.inference_label,
    }


def _interval(value: float, estimate: Estimate | None) -> dict:
    found = {"f1": value}
    if estimate is not None:
        found |= {"low": estimate.low, "high": estimate.high}
    return found


def _mean(values: list) -> float | None:
    return None if any(v is None for v in values) else mean(values)


def _total(values: list) -> int | None:
    return None if any(v is None for v in values) else sum(values)


def _setting_scores(scores: Scores, setting: Setting) -> dict:
    rows = scores.rows[setting]
    benchmarks = {}
    for benchmark in scores.benchmarks:
        if benchmark not in rows:
            continue
        runs = rows[benchmark]
        benchmarks[benchmark] = {
            **_interval(scores.f1[setting][benchmark], scores.interval(setting, benchmark)),
            "precision": _mean([r.get("precision") for r in runs]),
            "recall": _mean([r.get("recall") for r in runs]),
            "n_queries": _total([r.get("n_queries") for r in runs]),
            "n_unparseable": _total([r.get("n_unparseable") for r in runs]),
        }
    average = scores.average(setting)
    cells = dict.fromkeys(r["model"] for runs in rows.values() for r in runs)
    return {
        **_describe(setting),
        "cells": list(cells),
        "benchmarks": benchmarks,
        "average": None if average is None else _interval(average, scores.interval(setting)),
    }


def _difference(scores: Scores, setting: Setting, baseline: Setting, benchmark: str | None) -> dict | None:
    a, b = scores.score(setting, benchmark), scores.score(baseline, benchmark)
    if a is None or b is None:
        return None
    found = {"f1": a, "baseline_f1": b, "difference": a - b}
    if (diff := scores.difference(setting, baseline, benchmark)) is not None:
        found |= {"low": diff.low, "high": diff.high, "p": diff.p}
    return found


def _differences(scores: Scores, setting: Setting, baseline: Setting) -> dict:
    per = {b: _difference(scores, setting, baseline, b) for b in scores.benchmarks}
    return {
        "setting": _describe(setting),
        "baseline": _describe(baseline),
        "benchmarks": {b: found for b, found in per.items() if found is not None},
        "average": _difference(scores, setting, baseline, None),
    }
