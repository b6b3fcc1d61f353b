"""Views of an experiment's results table in the paper's shapes: Markdown tables and PNG plots.

Views: the main table (Table 1/2: per benchmark + average, best per block in bold), the data-size curve
(Fig. 2), training retrieval strategies (Fig. 3), out-domain inference strategies (Fig. 4), in-domain pool
size (Fig. 5), the number of examples k, RA-IT minus vanilla IT, and paired differences between decodings,
training retrieval strategies, examples at inference and training recipes, and the paper's findings
checked one by one (:mod:`.findings`). Scores are micro-F1 in percent, averaged over training seeds (a
named training recipe is another model, never a seed). Where the results carry per-sentence counts
(``rows[].sentences``), every score gets a 95% bootstrap interval over test sentences
(:mod:`rait.bootstrap`), shown in the tables and as error bars in the plots, and RA-IT minus vanilla IT is
a paired bootstrap with its p-value; older results without them are reported without intervals. A view
whose data is absent from the results is skipped with a note.

Modules: :mod:`.results` (loading and checking ``results.json``), :mod:`.scores` (settings and F1 per
setting with bootstrap intervals), :mod:`.tables` (Markdown tables), :mod:`.plots` (matplotlib helpers),
:mod:`.views` (the report's sections), :mod:`.findings`, :mod:`.export` (the same numbers as ``scores.json``);
:func:`build_report` writes them all."""

from __future__ import annotations

from pathlib import Path

from rait.bootstrap import DEFAULT_SAMPLES, DEFAULT_SEED
from rait.fileio import atomic_write, write_json
from rait.report.export import SCORES_JSON, _scores_json, scores_json
from rait.report.findings import findings
from rait.report.results import load_results
from rait.report.scores import STRATEGY_NAMES, Cell, Scores, Setting
from rait.report.tables import choice_fact, markdown_table, results_markdown, stop_counts
from rait.report.views import (
    View,
    baseline_differences,
    decoding_differences,
    example_differences,
    k_table,
    main_table,
    out_domain_bars,
    paired_differences,
    pool_size_curve,
    precision_recall_table,
    recipe_differences,
    seed_spread,
    selection_table,
    size_curve,
    strategy_bars,
    strategy_differences,
    threshold_curve,
)

__all__ = [
    "REPORT_MD",
    "SCORES_JSON",
    "STRATEGY_NAMES",
    "Cell",
    "Scores",
    "Setting",
    "View",
    "baseline_differences",
    "build_report",
    "decoding_differences",
    "example_differences",
    "findings",
    "k_table",
    "load_results",
    "main_table",
    "markdown_table",
    "out_domain_bars",
    "paired_differences",
    "pool_size_curve",
    "precision_recall_table",
    "recipe_differences",
    "results_markdown",
    "scores_json",
    "seed_spread",
    "selection_table",
    "size_curve",
    "stop_counts",
    "strategy_bars",
    "strategy_differences",
    "threshold_curve",
]

REPORT_MD = "report.md"


def build_report(
    results: dict,
    output_dir: str | Path,
    *,
    source: str | Path | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    baseline: str | None = None,
) -> Path:
    """Write every view (Markdown in ``report.md``, plots as PNG) and their numbers (``scores.json``, see
    :func:`scores_json`) under ``output_dir``; returns report.md. ``samples`` and ``seed`` set the bootstrap
    (intervals only where the results have per-sentence counts). ``baseline``: a model of the results (its
    name, e.g. ``n2217-vanilla-s42``) every other setting is also compared with (:func:`baseline_differences`;
    a clear error for a model the results lack)."""
    output_dir = Path(output_dir)
    scores = Scores(results, samples=samples, seed=seed)
    against = baseline_differences(scores, baseline) if baseline is not None else None
    output_dir.mkdir(parents=True, exist_ok=True)
    views = [
        main_table(scores),
        size_curve(scores, output_dir),
        strategy_bars(scores, output_dir),
        out_domain_bars(scores, output_dir),
        pool_size_curve(scores, output_dir),
        k_table(scores),
        paired_differences(scores, output_dir),
    ]
    optional = (
        precision_recall_table(scores),
        threshold_curve(results, output_dir),
        decoding_differences(scores),
        strategy_differences(scores),
        example_differences(scores),
        recipe_differences(scores),
        seed_spread(scores, output_dir),
        selection_table(results),
        findings(scores),
    )
    views += [view for view in optional if view]
    if against is not None:
        views.append(against)
    lines = [f"# Report: {results.get('experiment', '')}", ""]
    facts = [
        f"base model `{results['base_model']}`" if results.get("base_model") else "",
        f"embedder `{results['embedder']}`" if results.get("embedder") else "",
        f"up to {results['max_examples']} sentences per benchmark" if results.get("max_examples") else "",
        f"scored with the `{results['protocol']}` protocol" if results.get("protocol") else "",
        choice_fact(results),
        f"results from `{source}`" if source else "",
    ]
    lines += [
        "Micro-F1 (%), averaged over training seeds; Avg = mean over benchmarks (— when one is missing).",
        "; ".join(f for f in facts if f) + ".",
        "",
    ]
    if stops := stop_counts(results):
        lines += [stops, ""]
    if scores.has_intervals:
        lines += [
            f"[low, high]: 95% percentile bootstrap interval over test sentences ({samples:,} resamples, "
            f"seed {seed}); the average resamples every benchmark. Differences are paired (the same "
            "resampled sentences for both models); p is two-sided. Scores without an interval lack "
            "per-sentence counts.",
            "",
        ]
    else:
        lines += [
            "Confidence intervals unavailable: these results have no per-sentence counts "
            "(written before rait kept them).",
            "",
        ]
    if not results.get("complete", True):
        lines += [f"**Incomplete:** {len(results.get('missing', []))} eval cell(s) have not finished.", ""]
    for view in views:
        lines += [f"## {view.title}", ""]
        if view.skipped:
            lines += [f"_Skipped: {view.skipped}._", ""]
            continue
        lines.append(view.markdown)
        if view.plot:
            lines += [f"![{view.title}]({view.plot.name})", ""]
    write_json(output_dir / SCORES_JSON, _scores_json(results, scores, baseline))
    path = output_dir / REPORT_MD
    with atomic_write(path) as handle:
        handle.write("\n".join(lines).rstrip() + "\n")
    return path
