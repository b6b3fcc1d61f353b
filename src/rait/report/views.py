"""The report's sections (:class:`View`): the paper's tables and figures built from :class:`Scores`, the
paired differences (RA-IT minus vanilla IT, one decoding minus another, examples at inference minus
none) and the model selection; each skipped with a reason when its data is absent from the results."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rait.bootstrap import DEFAULT_SAMPLES, Estimate
from rait.report.plots import _bars, _difference_plot, _figure, _save, _yerr
from rait.report.scores import Cell, Scores, Setting, _decoding_order, _model_order, _strategy
from rait.report.tables import _row_best_table, _value, markdown_table


@dataclass(slots=True)
class View:
    """One section of the report: Markdown, an optional plot file, or the reason it was skipped."""

    key: str
    title: str
    markdown: str = ""
    plot: Path | None = None
    skipped: str | None = None


def _training_data(setting: Setting) -> str:
    return "no fine-tuning" if setting.size is None else f"{setting.size:,}"


def main_table(scores: Scores) -> View:
    """Table 1/2: models without examples at inference, one block per training size (base model first), per
    decoding (free, the paper's, first; blocks of another decoding name it)."""
    view = View("main", "Main results (Table 1/2 style): inference without examples")
    decodings = sorted({s.decoding for s in scores.f1 if s.mode == "none"}, key=_decoding_order)
    if not decodings:
        view.skipped = "no results without examples at inference"
        return view
    blocks: dict[str, list] = defaultdict(list)
    for decoding in decodings:
        for s in scores.settings(mode="none", decoding=decoding):
            label = _training_data(s)
            label += "" if decoding == "free" else f", {decoding} decoding"
            blocks[label].append((s.model_label, scores.cells(s)))
    view.markdown = markdown_table(
        ["Training data", "Model", *scores.benchmarks, "Avg"], list(blocks.items())
    )
    return view


def size_curve(scores: Scores, output_dir: Path) -> View:
    """Fig. 2: average F1 against training-set size, one line per method."""
    view = View("size", "Training data size (Fig. 2): average F1 vs size, inference without examples")
    series: dict[str, dict[int, Cell]] = defaultdict(dict)
    for s in scores.settings(mode="none"):
        avg = scores.average_cell(s)
        if s.method != "base" and avg is not None:
            series[s.model_label][s.size] = avg
    series = {label: points for label, points in series.items() if len(points) >= 2}
    if not series:
        view.skipped = "needs at least two training sizes of one method, scored on every benchmark"
        return view
    sizes = sorted({size for points in series.values() for size in points})
    base = [scores.average_cell(s) for s in scores.settings(mode="none", method="base")]
    rows = [(label, [points.get(n) for n in sizes]) for label, points in series.items()]
    if base and base[0] is not None:
        rows.insert(0, ("Base model", [base[0]] * len(sizes)))
    view.markdown = markdown_table(["", "Model", *[f"{n:,}" for n in sizes]], [("", rows)], bold_best=False)
    figure = _figure()
    axes = figure.add_subplot()
    for label, points in series.items():
        xs = sorted(points)
        cells = [points[x] for x in xs]
        axes.errorbar(xs, [_value(c) for c in cells], yerr=_yerr(cells), marker="o", capsize=3, label=label)
    if base and base[0] is not None:
        axes.axhline(_value(base[0]), linestyle="--", color="grey", label="Base model")
    axes.set_xscale("log")
    axes.set_xticks(sizes, [f"{n:,}" for n in sizes])
    axes.minorticks_off()
    axes.set_xlabel("training passages")
    axes.set_ylabel("average micro-F1 (%)")
    axes.legend()
    view.plot = _save(figure, output_dir / "fig2_data_size.png")
    return view


def strategy_bars(scores: Scores, output_dir: Path) -> View:
    """Fig. 3: RA-IT training retrieval strategies at one size and k, beside vanilla IT."""
    view = View("strategies", "Retrieval strategies in training (Fig. 3): inference without examples")
    groups: dict[tuple, list[Setting]] = defaultdict(list)
    for s in scores.settings(mode="none", method="ra-it"):
        groups[(s.size, s.k)].append(s)
    groups = {key: members for key, members in groups.items() if len(members) >= 2}
    if not groups:
        view.skipped = "needs RA-IT models trained with at least two retrieval strategies at one size and k"
        return view
    blocks, bars = [], {}
    for (size, k), members in groups.items():
        vanilla = scores.settings(mode="none", method="vanilla", size=size)[:1]
        rows = [
            (s.model_label if s.method == "vanilla" else _strategy(s.strategy), scores.cells(s))
            for s in vanilla + members
        ]
        blocks.append((f"{size:,}, k={k}", rows))
        bars[f"{size:,} (k={k})"] = {label: cells[-1] for label, cells in rows if cells[-1] is not None}
    view.markdown = markdown_table(["Training data", "Strategy", *scores.benchmarks, "Avg"], blocks)
    if any(bars.values()):
        view.plot = _bars(bars, "average micro-F1 (%)", output_dir / "fig3_strategies.png")
    return view


def out_domain_bars(scores: Scores, output_dir: Path) -> View:
    """Fig. 4: out-domain example strategies at inference, per model, beside no examples."""
    view = View("out_domain", "Out-domain examples at inference (Fig. 4): average F1")
    models = list(dict.fromkeys(s.model for s in scores.settings(mode="out-domain")))
    if not models:
        view.skipped = "no results with out-domain examples at inference"
        return view
    table: dict[str, dict[str, Cell]] = defaultdict(dict)
    for s in scores.settings(mode="none") + scores.settings(mode="out-domain"):
        if s.model in models:
            table[s.sized_label][s.inference_label] = scores.average_cell(s)
    columns = list(dict.fromkeys(c for row in table.values() for c in row))
    blocks = [("", [(label, [row.get(c) for c in columns])]) for label, row in table.items()]
    view.markdown = _row_best_table(["", "Model", *columns], blocks)
    bars = {label: {c: v for c, v in row.items() if v is not None} for label, row in table.items()}
    if any(bars.values()):
        view.plot = _bars(bars, "average micro-F1 (%)", output_dir / "fig4_out_domain.png")
    return view


def pool_size_curve(scores: Scores, output_dir: Path) -> View:
    """Fig. 5: average F1 against the in-domain pool size N (N=0: no examples), per model."""
    view = View("pool", "In-domain example pool size (Fig. 5): average F1 vs N")
    settings = scores.settings(mode="in-domain")
    if not settings:
        view.skipped = "no results with in-domain examples at inference"
        return view
    series: dict[str, dict[int, Cell]] = defaultdict(dict)
    for s in settings:
        label = f"{s.sized_label}, {_strategy(s.inference_strategy)} k={s.inference_k}"
        series[label][s.pool_size] = scores.average_cell(s)
        for none in scores.settings(mode="none"):
            if none.model == s.model:
                series[label][0] = scores.average_cell(none)
    sizes = sorted({n for points in series.values() for n in points})
    rows = [(label, [points.get(n) for n in sizes]) for label, points in series.items()]
    view.markdown = _row_best_table(["", "Model", *[f"N={n:,}" for n in sizes]], [("", rows)]) + (
        "\n\nN: labelled sentences drawn (seeded) from each benchmark's train split; a split smaller than N "
        "is used whole."
    )
    figure = _figure()
    axes = figure.add_subplot()
    for label, points in series.items():
        xs = [i for i, n in enumerate(sizes) if points.get(n) is not None]
        cells = [points[sizes[i]] for i in xs]
        axes.errorbar(xs, [_value(c) for c in cells], yerr=_yerr(cells), marker="o", capsize=3, label=label)
    axes.set_xticks(range(len(sizes)), [f"{n:,}" for n in sizes])
    axes.set_xlabel("in-domain pool size N (0 = no examples)")
    axes.set_ylabel("average micro-F1 (%)")
    axes.legend(fontsize="small")
    view.plot = _save(figure, output_dir / "fig5_pool_size.png")
    return view


def k_table(scores: Scores) -> View:
    """The number of retrieved examples k in RA-IT training, per size and strategy."""
    view = View("k", "Number of examples k in training: inference without examples")
    groups: dict[tuple, list[Setting]] = defaultdict(list)
    for s in scores.settings(mode="none", method="ra-it"):
        groups[(s.size, s.strategy)].append(s)
    groups = {key: sorted(m, key=lambda s: s.k) for key, m in groups.items() if len({s.k for s in m}) >= 2}
    if not groups:
        view.skipped = "needs RA-IT models trained with at least two values of k at one size and strategy"
        return view
    blocks = [
        (f"{size:,}, {_strategy(strategy)}", [(f"k={s.k}", scores.cells(s)) for s in members])
        for (size, strategy), members in groups.items()
    ]
    view.markdown = markdown_table(["Training data", "k", *scores.benchmarks, "Avg"], blocks)
    return view


def _p(p: float | None, samples: int) -> str:
    if p is None:
        return "—"
    if p == 0:
        return f"< {1 / samples:.4g}"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1g}"  # 0.0002, not 0.000


def paired_differences(scores: Scores, output_dir: Path) -> View:
    """RA-IT minus vanilla IT (same size, same inference settings and decoding), per benchmark and on
    average: the difference, its paired-bootstrap interval and p-value; every decoding in the results."""
    view = View("paired", "RA-IT minus vanilla IT (paired bootstrap over test sentences)")
    pairs = scores.pairs()
    if not pairs:
        view.skipped = (
            "needs an RA-IT and a vanilla IT model of the same size with the same inference settings"
        )
        return view
    samples = scores.bootstrap.samples if scores.bootstrap else DEFAULT_SAMPLES
    header = [
        "Training data",
        "RA-IT model",
        "Inference",
        "Benchmark",
        "RA-IT",
        "Vanilla IT",
        "Δ",
        "95% CI",
        "p",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|" + "---:|" * (len(header) - 4)]
    groups: dict[str, list[tuple[str, Estimate]]] = {}
    for ra_it, vanilla in pairs:
        label = f"{ra_it.size:,}, {_strategy(ra_it.strategy)} k={ra_it.k}, {ra_it.inference_label}"
        first = True
        for benchmark in [*scores.benchmarks, None]:
            a, b = scores.score(ra_it, benchmark), scores.score(vanilla, benchmark)
            if a is None or b is None:
                continue
            diff = scores.difference(ra_it, vanilla, benchmark)
            interval = f"[{diff.low:.2f}, {diff.high:.2f}]" if diff else "—"
            name = benchmark or "**Avg**"
            lead = [f"{ra_it.size:,}", ra_it.model_label, ra_it.inference_label] if first else ["", "", ""]
            row = [
                *lead,
                name,
                f"{a:.2f}",
                f"{b:.2f}",
                f"{a - b:+.2f}",
                interval,
                _p(diff and diff.p, samples),
            ]
            lines.append("| " + " | ".join(row) + " |")
            first = False
            if diff:
                groups.setdefault(label, []).append((benchmark or "Avg", diff))
    view.markdown = "\n".join(lines) + "\n"
    if groups:
        view.plot = _difference_plot(groups, output_dir / "fig_paired_differences.png")
    return view


def _average_differences(
    scores: Scores, view: View, pairs, header: list[str], lead: Callable[[Setting, Setting], list[str]]
) -> View | None:
    """A row per (setting, baseline) pair scored on every benchmark: the ``lead`` columns, both average F1s,
    the difference with its paired-bootstrap interval and p-value, then the difference per benchmark; None
    without such a pair."""
    pairs = [p for p in pairs if None not in (scores.average(p[0]), scores.average(p[1]))]
    if not pairs:
        return None
    samples = scores.bootstrap.samples if scores.bootstrap else DEFAULT_SAMPLES
    numbers = ["F1", "Baseline F1", "Δ", "95% CI", "p", *(f"Δ {b}" for b in scores.benchmarks)]
    lines = [
        "| " + " | ".join([*header, *numbers]) + " |",
        "|---" * len(header) + "|" + "---:|" * len(numbers),
    ]
    for setting, baseline in pairs:
        a, b = scores.average(setting), scores.average(baseline)
        diff = scores.difference(setting, baseline)
        row = [
            *lead(setting, baseline),
            f"{a:.2f}",
            f"{b:.2f}",
            f"{a - b:+.2f}",
            f"[{diff.low:.2f}, {diff.high:.2f}]" if diff else "—",
            _p(diff and diff.p, samples),
            *(f"{scores.score(setting, n) - scores.score(baseline, n):+.2f}" for n in scores.benchmarks),
        ]
        lines.append("| " + " | ".join(row) + " |")
    view.markdown = "\n".join(lines) + "\n"
    return view


def decoding_differences(scores: Scores) -> View | None:
    """One decoding minus another for the same model and inference settings, on the average over benchmarks
    with its paired-bootstrap interval and p-value, and per benchmark; None without a model scored on every
    benchmark with two decodings."""
    return _average_differences(
        scores,
        View("decodings", "One decoding minus another (same model, paired bootstrap over test sentences)"),
        scores.decoding_pairs(),
        ["Training data", "Model", "Inference", "Decoding", "Baseline"],
        lambda s, base: [
            _training_data(s),
            s.model_label,
            s._replace(decoding="free").inference_label,
            s.decoding,
            base.decoding,
        ],
    )


def strategy_differences(scores: Scores) -> View | None:
    """One training retrieval strategy minus another (RA-IT models of the same size and k, same inference
    settings and decoding; Random the baseline), on the average over benchmarks with its paired-bootstrap
    interval and p-value, and per benchmark; None without two such models scored on every benchmark."""
    return _average_differences(
        scores,
        View(
            "strategy_differences",
            "One retrieval strategy in training minus another (paired bootstrap over test sentences)",
        ),
        scores.strategy_pairs(),
        ["Training data", "Inference", "Strategy", "Baseline"],
        lambda s, base: [
            f"{s.size:,}, k={s.k}",
            s.inference_label,
            _strategy(s.strategy),
            _strategy(base.strategy),
        ],
    )


def baseline_differences(scores: Scores, model: str) -> View:
    """Every setting minus one model without examples (``model``: its results name), same decoding: each
    lever against one baseline, on the average over benchmarks with its paired-bootstrap interval and
    p-value, and per benchmark (a clear error for a model the results lack)."""
    view = View(
        "baseline", f"Every setting minus {model} without examples (paired bootstrap over test sentences)"
    )
    found = _average_differences(
        scores,
        view,
        scores.baseline_pairs(model),
        ["Training data", "Model", "Inference", "Decoding"],
        lambda s, _: [
            _training_data(s),
            s.model_label,
            s._replace(decoding="free").inference_label,
            s.decoding,
        ],
    )
    if found is None:
        view.skipped = f"no other setting scored on every benchmark beside {model}"
    return view


def recipe_differences(scores: Scores) -> View | None:
    """A named training recipe (e.g. more negative types, full fine-tuning) minus the plain one for the same
    method, size, inference settings and decoding, on the average over benchmarks with its paired-bootstrap
    interval and p-value, and per benchmark; None without both scored on every benchmark."""
    return _average_differences(
        scores,
        View("recipes", "One training recipe minus the plain one (paired bootstrap over test sentences)"),
        scores.recipe_pairs(),
        ["Training data", "Model", "Inference", "Recipe"],
        lambda s, _: [f"{s.size:,}", s._replace(recipe="").model_label, s.inference_label, s.recipe],
    )


def example_differences(scores: Scores) -> View | None:
    """On-demand RAG: examples at inference (out-domain or in-domain) minus none for the same model and
    decoding, on the average over benchmarks with its paired-bootstrap interval and p-value, and per
    benchmark; None without a model scored on every benchmark both ways."""
    return _average_differences(
        scores,
        View(
            "examples", "Examples at inference minus none (same model, paired bootstrap over test sentences)"
        ),
        scores.example_pairs(),
        ["Training data", "Model", "Decoding", "Examples"],
        lambda s, _: [
            _training_data(s),
            s.model_label,
            s.decoding,
            s._replace(decoding="free").inference_label,
        ],
    )


def seed_spread(scores: Scores, output_dir: Path) -> View | None:
    """Models trained with several seeds: each run's average F1, their mean and standard deviation, and the
    interval that resamples both the runs and the test sentences (:mod:`rait.bootstrap`); None without a
    model trained more than once."""
    spread = scores.seed_spread()
    if not spread:
        return None
    view = View("seeds", "Spread between training runs (seeds): average F1 over benchmarks")
    header = ["Training data", "Model", "Inference", "Runs", "Each run", "Mean", "SD", "Interval"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    figure = _figure()
    axes = figure.add_subplot()
    for index, (s, runs, average, sd) in enumerate(spread):
        estimate = scores.interval(s)
        interval = "—" if estimate is None else f"[{estimate.low:.2f}, {estimate.high:.2f}]"
        each = ", ".join(f"{value:.2f}" for value in runs.values())
        cells = [_training_data(s), s.model_label, s.inference_label, str(len(runs)), each]
        lines.append("| " + " | ".join([*cells, f"{average:.2f}", f"{sd:.2f}", interval]) + " |")
        axes.scatter([index] * len(runs), list(runs.values()), color="grey", s=14, zorder=3)
        error = _yerr([estimate]) if estimate is not None else None
        axes.errorbar([index], [average], yerr=error, fmt="o", color="black", capsize=4)
    lines.append(
        "\nEach run: one training seed (or training sample); the interval resamples runs and test sentences."
    )
    axes.set_xticks(range(len(spread)), [f"{s.sized_label}\n{s.inference_label}" for s, *_ in spread])
    axes.tick_params(axis="x", labelsize="x-small")
    axes.set_ylabel("average micro-F1 (%)")
    view.markdown = "\n".join(lines) + "\n"
    view.plot = _save(figure, output_dir / "fig_seed_spread.png")
    return view


def selection_table(results: dict) -> View | None:
    """The model selection of ``training.search``: per training cell, every candidate's validation loss,
    the chosen one in bold (a cell outside ``search.sizes``: its one run, named with its donor); None
    without a search."""
    selection = results.get("selection") or {}
    if not selection:
        return None
    view = View("selection", "Model selection: validation loss per candidate (held-out training data)")
    lines = ["| Model | learning rate | epochs | validation loss |", "|---|---:|---:|---:|"]
    for cell, found in selection.items():
        for index, candidate in enumerate(found["candidates"]):
            chosen = all(candidate.get(k) == v for k, v in found["selected"].items())
            loss = candidate["validation_loss"]
            by = f" (hyper-parameters of {found['selected_by']})" if "selected_by" in found else ""
            cells = [
                cell + by if index == 0 else "",
                f"{candidate['learning_rate']:g}",
                f"{candidate['epochs']:g}",
                "—" if loss is None else (f"**{loss:.4f}**" if chosen else f"{loss:.4f}"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    view.markdown = "\n".join(lines) + "\n"
    return view


def precision_recall_table(scores: Scores) -> View | None:
    """Precision, recall and F1 per benchmark of every setting without examples at inference that has them
    (e.g. one model's decodings and confidence settings side by side); None when no row has precision."""
    settings = sorted(
        (s for s in scores.f1 if s.mode == "none" and scores.precision_recall(s)),
        key=lambda s: (_model_order(s), _decoding_order(s.decoding)),
    )
    if not settings:
        return None
    view = View("precision_recall", "Precision / recall / F1 per benchmark, inference without examples")
    names = [*scores.benchmarks, "Avg"]
    lines = ["| Model | Decoding | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for s in settings:
        found = scores.precision_recall(s)
        cells = [f"{p:.1f} / {r:.1f} / {f:.1f}" if p is not None else "—" for p, r, f in found]
        lines.append(f"| {s.sized_label} | {s.decoding} | " + " | ".join(cells) + " |")
    view.markdown = "P / R / F1 (%).\n\n" + "\n".join(lines) + "\n"
    return view


def threshold_curve(results: dict, output_dir: Path) -> View | None:
    """The precision-recall curve of a confidence threshold sweep (``results["curve"]``, as
    ``rait evaluate --curve`` writes it): a table and a plot of the average P, R and F1 by threshold; None
    without one."""
    curve = results.get("curve")
    if not curve:
        return None
    kind = "every type kept" if curve["multi_label"] else "one type per span"
    view = View("threshold_curve", f"Precision and recall by confidence threshold ({kind}), average")
    points = curve["points"]
    lines = ["| threshold | P | R | F1 |", "|---:|---:|---:|---:|"]
    lines += [
        f"| {p['threshold']:.2f} | {p['precision']:.2f} | {p['recall']:.2f} | {p['f1']:.2f} |" for p in points
    ]
    view.markdown = (curve.get("what", "") + "\n\n" if curve.get("what") else "") + "\n".join(lines) + "\n"
    figure = _figure()
    left, right = figure.subplots(1, 2)
    thresholds = [p["threshold"] for p in points]
    for metric, label in (("precision", "P"), ("recall", "R"), ("f1", "F1")):
        left.plot(thresholds, [p[metric] for p in points], marker=".", label=label)
    left.set_xlabel("score threshold")
    left.set_ylabel("average over benchmarks (%)")
    left.legend(fontsize="small")
    right.plot([p["recall"] for p in points], [p["precision"] for p in points], marker=".")
    right.set_xlabel("recall (%)")
    right.set_ylabel("precision (%)")
    view.plot = _save(figure, output_dir / "fig_threshold_curve.png")
    return view
