"""Views of an experiment's results table in the paper's shapes: Markdown tables and PNG plots.

Views: the main table (Table 1/2: per benchmark + average, best per block in bold), the data-size curve
(Fig. 2), training retrieval strategies (Fig. 3), out-domain inference strategies (Fig. 4), in-domain pool
size (Fig. 5), the number of examples k, and RA-IT minus vanilla IT. Scores are micro-F1 in percent,
averaged over training seeds. Where the results carry per-sentence counts (``rows[].sentences``), every score
gets a 95% bootstrap interval over test sentences (:mod:`rait.bootstrap`), shown in the tables and as error
bars in the plots, and RA-IT minus vanilla IT is a paired bootstrap with its p-value; older results without
them are reported without intervals. A view whose data is absent from the results is skipped with a note."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import NamedTuple

import numpy as np

from rait.bootstrap import DEFAULT_SAMPLES, DEFAULT_SEED, BootstrapF1, Estimate, micro_f1
from rait.errors import DataError
from rait.fileio import atomic_write, read_json

REPORT_MD = "report.md"
STRATEGY_NAMES = {
    "nn": "NN",
    "nn_bm25": "NN+BM25",
    "dnn": "DNN",
    "dnn_bm25": "DNN+BM25",
    "random": "Random",
    "mixed_nn": "MixedNN",
}
_ROW_KEYS = (
    "model",
    "size",
    "method",
    "strategy",
    "k",
    "seed",
    "mode",
    "inference_strategy",
    "inference_k",
    "pool_size",
    "benchmark",
    "f1",
)


class Setting(NamedTuple):
    """A row of the results table without its seed and benchmark: what the views compare."""

    method: str
    size: int | None
    strategy: str | None
    k: int | None
    mode: str
    inference_strategy: str | None
    inference_k: int | None
    pool_size: int | None
    decoding: str = "free"

    @classmethod
    def of(cls, row: dict) -> Setting:
        """The setting of a results row (rows from before decodings existed are free decoding)."""
        return cls(*(row.get(name, "free") if name == "decoding" else row[name] for name in cls._fields))

    @property
    def model(self) -> tuple:
        return (self.method, self.size, self.strategy, self.k)

    @property
    def model_label(self) -> str:
        if self.method == "base":
            return "Base model"
        if self.method == "vanilla":
            return "Vanilla IT"
        return f"RA-IT ({_strategy(self.strategy)}, k={self.k})"

    @property
    def sized_label(self) -> str:
        return self.model_label + (f" ({self.size:,})" if self.size is not None else "")

    @property
    def inference_label(self) -> str:
        suffix = "" if self.decoding == "free" else f", {self.decoding} decoding"
        if self.mode == "none":
            return "no examples" + suffix
        if self.mode == "out-domain":
            return f"out-domain {_strategy(self.inference_strategy)}, k={self.inference_k}" + suffix
        return (
            f"in-domain N={self.pool_size} {_strategy(self.inference_strategy)}, k={self.inference_k}"
            + suffix
        )


def _strategy(name: str | None) -> str:
    return STRATEGY_NAMES.get(name or "", str(name))


def _model_order(setting: Setting) -> tuple:
    method = (
        ("base", "vanilla", "ra-it").index(setting.method)
        if setting.method in ("base", "vanilla", "ra-it")
        else 3
    )
    strategy = list(STRATEGY_NAMES).index(setting.strategy) if setting.strategy in STRATEGY_NAMES else 99
    return (setting.size or 0, method, strategy, setting.k or 0)


def load_results(path: str | Path) -> dict:
    """Read a ``results.json`` (or the experiment directory holding one) and check its shape."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise DataError(path, "not an experiment results file: expected a mapping with a 'rows' list")
    if not isinstance(data.get("benchmarks"), list):
        raise DataError(path, "expected a list of benchmark names", field="benchmarks")
    for index, row in enumerate(data["rows"]):
        if not isinstance(row, dict):
            raise DataError(path, "must be a mapping", field=f"rows[{index}]")
        for key in _ROW_KEYS:
            if key not in row:
                raise DataError(path, "missing", field=f"rows[{index}].{key}")
        for metric in ("f1", "precision", "recall"):
            value = row.get(metric)
            if metric != "f1" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
                raise DataError(
                    path, f"must be a score from 0 to 100, got {value!r}", field=f"rows[{index}].{metric}"
                )
        if "sentences" in row:
            _check_sentences(path, row["sentences"], f"rows[{index}].sentences", row["f1"])
    return data


def _check_sentences(path: Path, sentences, key: str, f1: float) -> None:
    """``sentences``: a mapping of sentence id to [n_correct, n_pred, n_gold], non-negative integers,
    whose sums give the row's F1."""
    if not isinstance(sentences, dict):
        raise DataError(path, "must be a mapping of sentence id to [n_correct, n_pred, n_gold]", field=key)
    for sentence, counts in sentences.items():
        if not (
            isinstance(counts, list)
            and len(counts) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
        ):
            raise DataError(
                path, f"must be [n_correct, n_pred, n_gold], got {counts!r}", field=f"{key}.{sentence}"
            )
    summed = float(micro_f1(np.array([sum(c[i] for c in sentences.values()) for i in range(3)], dtype=float)))
    if abs(summed - f1) > 0.01:
        raise DataError(path, f"the counts give F1 {summed:.2f}, the row's f1 is {f1:.2f}", field=key)


Cell = float | Estimate | None  # a table number: a plain score, or one with its interval


class Scores:
    """F1 per (setting, benchmark), averaged over seeds; ``average`` needs every benchmark. With per-sentence
    counts in every row of a (setting, benchmark), its bootstrap replicates too (``bootstrap``)."""

    def __init__(self, results: dict, *, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED):
        self.benchmarks: list[str] = list(results["benchmarks"])
        collected: dict[Setting, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        sentences: dict[Setting, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for row in results["rows"]:
            setting = Setting.of(row)
            collected[setting][row["benchmark"]].append(float(row["f1"]))
            sentences[setting][row["benchmark"]].append(row.get("sentences"))
            if row["benchmark"] not in self.benchmarks:
                self.benchmarks.append(row["benchmark"])
        self.f1 = {s: {b: mean(v) for b, v in per.items()} for s, per in collected.items()}
        runs = {
            s: {b: seeds for b, seeds in per.items() if all(c is not None for c in seeds)}
            for s, per in sentences.items()
        }
        self.has_intervals = any(runs.values())
        self.bootstrap = BootstrapF1(runs, samples=samples, seed=seed) if self.has_intervals else None

    def settings(self, **where) -> list[Setting]:
        """Settings whose fields equal ``where``'s values, in model order; free decoding (the paper's
        protocol) unless ``where`` names a decoding."""
        where.setdefault("decoding", "free")
        found = [s for s in self.f1 if all(getattr(s, k) == v for k, v in where.items())]
        return sorted(found, key=_model_order)

    def average(self, setting: Setting) -> float | None:
        per = self.f1.get(setting, {})
        if not self.benchmarks or any(b not in per for b in self.benchmarks):
            return None
        return mean(per[b] for b in self.benchmarks)

    def values(self, setting: Setting) -> list[float | None]:
        """Per-benchmark F1 then the average."""
        per = self.f1.get(setting, {})
        return [per.get(b) for b in self.benchmarks] + [self.average(setting)]

    def interval(self, setting: Setting, benchmark: str | None = None) -> Estimate | None:
        """The bootstrap interval of one benchmark's F1, or (``None``) of the average over benchmarks."""
        if self.bootstrap is None:
            return None
        return self.bootstrap.interval(setting, benchmark if benchmark is not None else self.benchmarks)

    def average_cell(self, setting: Setting) -> Cell:
        """The average F1, with its interval where there is one."""
        average = self.average(setting)
        return None if average is None else (self.interval(setting) or average)

    def cells(self, setting: Setting) -> list[Cell]:
        """Like :meth:`values`, each score with its interval where there is one."""
        per = self.f1.get(setting, {})
        cells: list[Cell] = [
            None if b not in per else (self.interval(setting, b) or per[b]) for b in self.benchmarks
        ]
        return cells + [self.average_cell(setting)]

    def difference(self, setting: Setting, other: Setting, benchmark: str | None = None) -> Estimate | None:
        """Paired bootstrap of ``setting`` minus ``other`` on one benchmark, or (``None``) the average."""
        if self.bootstrap is None:
            return None
        return self.bootstrap.difference(
            setting, other, benchmark if benchmark is not None else self.benchmarks
        )


# -------------------------------------------------------------------------------------------- markdown


def _value(cell: Cell) -> float | None:
    return cell.value if isinstance(cell, Estimate) else cell


def _fmt(cell: Cell, bold: bool = False) -> str:
    """``12.34``, or ``12.34 [10.1, 14.6]`` with an interval; bold marks the score only."""
    value = _value(cell)
    if value is None:
        return "—"
    text = f"**{value:.2f}**" if bold else f"{value:.2f}"
    if isinstance(cell, Estimate):
        text += f" [{cell.low:.1f}, {cell.high:.1f}]"
    return text


def markdown_table(
    header: Sequence[str],
    blocks: Sequence[tuple[str, Sequence[tuple[str, Sequence]]]],
    bold_best: bool = True,
) -> str:
    """A Markdown table of blocks; each block is ``(label, [(row label, numbers...)])``. The block label
    fills the first column of the block's first row; with ``bold_best`` the best number of each column is
    bold within every block of two or more rows."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|",
    ]
    for label, rows in blocks:
        width = len(rows[0][1]) if rows else 0
        values = [[_value(v) for v in numbers] for _, numbers in rows]
        best = [max((r[c] for r in values if r[c] is not None), default=None) for c in range(width)]
        for index, (row_label, numbers) in enumerate(rows):
            cells = [
                _fmt(v, bold_best and len(rows) > 1 and _value(v) is not None and _value(v) == best[c])
                for c, v in enumerate(numbers)
            ]
            lines.append("| " + " | ".join([label if index == 0 else "", row_label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def stop_counts(results: dict) -> str:
    """One line: how many answers hit the decoding cap or stopped in a repetition loop, over the rows that
    count them (``""`` when none does: results written before rait counted them)."""
    counted = [row for row in results["rows"] if row.get("n_capped") is not None]
    if not counted:
        return ""
    queries = sum(row.get("n_queries") or 0 for row in counted)
    capped = sum(row["n_capped"] for row in counted)
    looped = sum(row.get("n_repetition") or 0 for row in counted)
    return (
        f"Decoding: {capped} of {queries} answers hit the `max_new_tokens` cap (possibly cut), "
        f"{looped} stopped repeating themselves."
    )


def results_markdown(results: dict) -> str:
    """The plain results table (``results.md``): one row per model and inference mode, F1 per benchmark."""
    benchmarks = list(results["benchmarks"])
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for row in results["rows"]:
        setting = Setting.of(row)
        rows.setdefault((row["model"], setting.inference_label), {})[row["benchmark"]] = row["f1"]
    done, missing = len(results["rows"]), len(results.get("missing", []))
    lines = [
        f"# Results: {results.get('experiment', '')}",
        "",
        f"Micro-F1 (%) per benchmark; {done} of {done + missing} eval cells done"
        + (f"; scored with the `{results['protocol']}` protocol." if results.get("protocol") else "."),
        "",
    ]
    if stops := stop_counts(results):
        lines += [stops, ""]
    if not rows:
        return "\n".join(lines + ["No eval cell has finished yet.", ""])
    table = []
    for (model, inference), per in rows.items():
        avg = mean(per[b] for b in benchmarks) if all(b in per for b in benchmarks) else None
        table.append((model, [inference, *[_fmt(per.get(b)) for b in benchmarks], _fmt(avg)]))
    lines.append("| Model | Inference | " + " | ".join(benchmarks) + " | Avg |")
    lines.append("|---|---|" + "---:|" * (len(benchmarks) + 1))
    lines += ["| " + " | ".join([model, *cells]) + " |" for model, cells in table]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- views


@dataclass(slots=True)
class View:
    """One section of the report: Markdown, an optional plot file, or the reason it was skipped."""

    key: str
    title: str
    markdown: str = ""
    plot: Path | None = None
    skipped: str | None = None


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path


def main_table(scores: Scores) -> View:
    """Table 1/2: models without examples at inference, one block per training size (base model first)."""
    view = View("main", "Main results (Table 1/2 style): inference without examples")
    settings = scores.settings(mode="none")
    if not settings:
        view.skipped = "no results without examples at inference"
        return view
    blocks: dict[int | None, list] = defaultdict(list)
    for s in settings:
        blocks[s.size].append((s.model_label, scores.cells(s)))
    view.markdown = markdown_table(
        ["Training data", "Model", *scores.benchmarks, "Avg"],
        [("no fine-tuning" if size is None else f"{size:,}", rows) for size, rows in blocks.items()],
    )
    return view


def _yerr(cells: Sequence[Cell]) -> list[list[float]] | None:
    """Asymmetric error bars (below, above) for cells with intervals; None when no cell has one."""
    if not any(isinstance(c, Estimate) for c in cells):
        return None
    return [
        [c.value - c.low if isinstance(c, Estimate) else 0.0 for c in cells],
        [c.high - c.value if isinstance(c, Estimate) else 0.0 for c in cells],
    ]


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


def _bars(groups: dict[str, dict[str, Cell]], ylabel: str, path: Path) -> Path:
    """Grouped bars: one group per key of ``groups``, one bar per inner key; error bars where the cells
    have intervals."""
    figure = _figure()
    axes = figure.add_subplot()
    labels = list(dict.fromkeys(name for bars in groups.values() for name in bars))
    width = 0.8 / max(len(labels), 1)
    top = 0.0
    for index, name in enumerate(labels):
        xs = [
            g + (index - (len(labels) - 1) / 2) * width
            for g, bars in enumerate(groups.values())
            if name in bars
        ]
        cells = [bars[name] for bars in groups.values() if name in bars]
        ys = [_value(c) for c in cells]
        top = max([top, *ys, *(c.high for c in cells if isinstance(c, Estimate))])
        bars = axes.bar(xs, ys, width=width, label=name, yerr=_yerr(cells), capsize=3)
        axes.bar_label(bars, fmt="%.1f", fontsize="x-small", label_type="center")
    axes.set_ylim(0, max(top * 1.25, 1.0))
    axes.set_xticks(range(len(groups)), list(groups))
    axes.set_ylabel(ylabel)
    axes.legend(fontsize="small")
    return _save(figure, path)


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


def _row_best_table(header: Sequence[str], blocks) -> str:
    """A table whose best number is bolded per row (each row compares inference settings)."""
    lines = markdown_table(header, [], bold_best=False).splitlines()
    for _, rows in blocks:
        for label, numbers in rows:
            best = max((_value(v) for v in numbers if _value(v) is not None), default=None)
            cells = [
                _fmt(v, len(numbers) > 1 and _value(v) is not None and _value(v) == best) for v in numbers
            ]
            lines.append("| " + " | ".join(["", label, *cells]) + " |")
    return "\n".join(lines) + "\n"


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
    view.markdown = _row_best_table(["", "Model", *[f"N={n:,}" for n in sizes]], [("", rows)])
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


def _vanilla_of(setting: Setting) -> Setting:
    """The vanilla IT model of an RA-IT setting: same size and inference settings."""
    return setting._replace(method="vanilla", strategy=None, k=None)


def _p(p: float | None, samples: int) -> str:
    if p is None:
        return "—"
    return f"< {1 / samples:.4g}" if p == 0 else f"{p:.3f}"


def paired_differences(scores: Scores, output_dir: Path) -> View:
    """RA-IT minus vanilla IT (same size, same inference settings and decoding), per benchmark and on
    average: the difference, its paired-bootstrap interval and p-value; every decoding in the results."""
    view = View("paired", "RA-IT minus vanilla IT (paired bootstrap over test sentences)")
    ra_it = sorted(
        (s for s in scores.f1 if s.method == "ra-it"), key=lambda s: (s.decoding != "free", _model_order(s))
    )
    pairs = [(s, _vanilla_of(s)) for s in ra_it if _vanilla_of(s) in scores.f1]
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
            if benchmark is None:
                a, b = scores.average(ra_it), scores.average(vanilla)
            else:
                a, b = scores.f1[ra_it].get(benchmark), scores.f1[vanilla].get(benchmark)
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


def _difference_plot(groups: dict[str, list[tuple[str, Estimate]]], path: Path) -> Path:
    """Differences with their intervals: one marker series per RA-IT/vanilla pair, a column per benchmark."""
    figure = _figure()
    axes = figure.add_subplot()
    names = list(dict.fromkeys(name for points in groups.values() for name, _ in points))
    width = 0.6 / max(len(groups), 1)
    for index, (label, points) in enumerate(groups.items()):
        offset = (index - (len(groups) - 1) / 2) * width
        xs = [names.index(name) + offset for name, _ in points]
        cells = [diff for _, diff in points]
        axes.errorbar(xs, [c.value for c in cells], yerr=_yerr(cells), fmt="o", capsize=3, label=label)
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize="small")
    axes.set_ylabel("RA-IT minus vanilla IT, micro-F1 (points)")
    axes.legend(fontsize="x-small")
    return _save(figure, path)


def selection_table(results: dict) -> View | None:
    """The model selection of ``training.search``: per training cell, every candidate's validation loss,
    the chosen one in bold; None without a search."""
    selection = results.get("selection") or {}
    if not selection:
        return None
    view = View("selection", "Model selection: validation loss per candidate (held-out training data)")
    lines = ["| Model | learning rate | epochs | validation loss |", "|---|---:|---:|---:|"]
    for cell, found in selection.items():
        for index, candidate in enumerate(found["candidates"]):
            chosen = all(candidate.get(k) == v for k, v in found["selected"].items())
            loss = candidate["validation_loss"]
            cells = [
                cell if index == 0 else "",
                f"{candidate['learning_rate']:g}",
                f"{candidate['epochs']:g}",
                "—" if loss is None else (f"**{loss:.4f}**" if chosen else f"{loss:.4f}"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    view.markdown = "\n".join(lines) + "\n"
    return view


def build_report(
    results: dict,
    output_dir: str | Path,
    *,
    source: str | Path | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> Path:
    """Write every view (Markdown in ``report.md``, plots as PNG) under ``output_dir``; returns report.md.
    ``samples`` and ``seed`` set the bootstrap (intervals only where the results have per-sentence counts)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scores = Scores(results, samples=samples, seed=seed)
    views = [
        main_table(scores),
        size_curve(scores, output_dir),
        strategy_bars(scores, output_dir),
        out_domain_bars(scores, output_dir),
        pool_size_curve(scores, output_dir),
        k_table(scores),
        paired_differences(scores, output_dir),
    ]
    selection = selection_table(results)
    views += [selection] if selection else []
    lines = [f"# Report: {results.get('experiment', '')}", ""]
    facts = [
        f"base model `{results['base_model']}`" if results.get("base_model") else "",
        f"embedder `{results['embedder']}`" if results.get("embedder") else "",
        f"up to {results['max_examples']} sentences per benchmark" if results.get("max_examples") else "",
        f"scored with the `{results['protocol']}` protocol" if results.get("protocol") else "",
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
    path = output_dir / REPORT_MD
    with atomic_write(path) as handle:
        handle.write("\n".join(lines).rstrip() + "\n")
    return path
