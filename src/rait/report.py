"""Views of an experiment's results table in the paper's shapes: Markdown tables and PNG plots.

Views: the main table (Table 1/2: per benchmark + average, best per block in bold), the data-size curve
(Fig. 2), training retrieval strategies (Fig. 3), out-domain inference strategies (Fig. 4), in-domain pool
size (Fig. 5) and the number of examples k. Scores are micro-F1 in percent, averaged over training seeds.
A view whose data is absent from the results is skipped with a note."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import NamedTuple

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
        if self.mode == "none":
            return "no examples"
        if self.mode == "out-domain":
            return f"out-domain {_strategy(self.inference_strategy)}, k={self.inference_k}"
        return f"in-domain N={self.pool_size} {_strategy(self.inference_strategy)}, k={self.inference_k}"


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
        if not isinstance(row["f1"], int | float):
            raise DataError(path, f"must be a number, got {row['f1']!r}", field=f"rows[{index}].f1")
    return data


class Scores:
    """F1 per (setting, benchmark), averaged over seeds; ``average`` needs every benchmark."""

    def __init__(self, results: dict):
        self.benchmarks: list[str] = list(results["benchmarks"])
        collected: dict[Setting, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in results["rows"]:
            setting = Setting(*(row[name] for name in Setting._fields))
            collected[setting][row["benchmark"]].append(float(row["f1"]))
            if row["benchmark"] not in self.benchmarks:
                self.benchmarks.append(row["benchmark"])
        self.f1 = {s: {b: mean(v) for b, v in per.items()} for s, per in collected.items()}

    def settings(self, **where) -> list[Setting]:
        """Settings whose fields equal ``where``'s values, in model order."""
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


# -------------------------------------------------------------------------------------------- markdown


def _fmt(value: float | None, bold: bool = False) -> str:
    if value is None:
        return "—"
    text = f"{value:.2f}"
    return f"**{text}**" if bold else text


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
        best = [max((r[1][c] for r in rows if r[1][c] is not None), default=None) for c in range(width)]
        for index, (row_label, numbers) in enumerate(rows):
            cells = [
                _fmt(v, bold_best and len(rows) > 1 and v is not None and v == best[c])
                for c, v in enumerate(numbers)
            ]
            lines.append("| " + " | ".join([label if index == 0 else "", row_label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def results_markdown(results: dict) -> str:
    """The plain results table (``results.md``): one row per model and inference mode, F1 per benchmark."""
    benchmarks = list(results["benchmarks"])
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for row in results["rows"]:
        setting = Setting(*(row[name] for name in Setting._fields))
        rows.setdefault((row["model"], setting.inference_label), {})[row["benchmark"]] = row["f1"]
    done, missing = len(results["rows"]), len(results.get("missing", []))
    lines = [
        f"# Results: {results.get('experiment', '')}",
        "",
        f"Micro-F1 (%) per benchmark; {done} of {done + missing} eval cells done"
        + (f"; scored with the `{results['protocol']}` protocol." if results.get("protocol") else "."),
        "",
    ]
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
        blocks[s.size].append((s.model_label, scores.values(s)))
    view.markdown = markdown_table(
        ["Training data", "Model", *scores.benchmarks, "Avg"],
        [("no fine-tuning" if size is None else f"{size:,}", rows) for size, rows in blocks.items()],
    )
    return view


def size_curve(scores: Scores, output_dir: Path) -> View:
    """Fig. 2: average F1 against training-set size, one line per method."""
    view = View("size", "Training data size (Fig. 2): average F1 vs size, inference without examples")
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for s in scores.settings(mode="none"):
        avg = scores.average(s)
        if s.method != "base" and avg is not None:
            series[s.model_label][s.size] = avg
    series = {label: points for label, points in series.items() if len(points) >= 2}
    if not series:
        view.skipped = "needs at least two training sizes of one method, scored on every benchmark"
        return view
    sizes = sorted({size for points in series.values() for size in points})
    base = [scores.average(s) for s in scores.settings(mode="none", method="base")]
    rows = [(label, [points.get(n) for n in sizes]) for label, points in series.items()]
    if base and base[0] is not None:
        rows.insert(0, ("Base model", [base[0]] * len(sizes)))
    view.markdown = markdown_table(["", "Model", *[f"{n:,}" for n in sizes]], [("", rows)], bold_best=False)
    figure = _figure()
    axes = figure.add_subplot()
    for label, points in series.items():
        xs = sorted(points)
        axes.plot(xs, [points[x] for x in xs], marker="o", label=label)
    if base and base[0] is not None:
        axes.axhline(base[0], linestyle="--", color="grey", label="Base model")
    axes.set_xscale("log")
    axes.set_xticks(sizes, [f"{n:,}" for n in sizes])
    axes.minorticks_off()
    axes.set_xlabel("training passages")
    axes.set_ylabel("average micro-F1 (%)")
    axes.legend()
    view.plot = _save(figure, output_dir / "fig2_data_size.png")
    return view


def _bars(groups: dict[str, dict[str, float]], ylabel: str, path: Path) -> Path:
    """Grouped bars: one group per key of ``groups``, one bar per inner key."""
    figure = _figure()
    axes = figure.add_subplot()
    labels = list(dict.fromkeys(name for bars in groups.values() for name in bars))
    width = 0.8 / max(len(labels), 1)
    for index, name in enumerate(labels):
        xs = [
            g + (index - (len(labels) - 1) / 2) * width
            for g, bars in enumerate(groups.values())
            if name in bars
        ]
        ys = [bars[name] for bars in groups.values() if name in bars]
        axes.bar_label(axes.bar(xs, ys, width=width, label=name), fmt="%.1f", fontsize="x-small")
    top = max((v for bars in groups.values() for v in bars.values()), default=0.0)
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
            (s.model_label if s.method == "vanilla" else _strategy(s.strategy), scores.values(s))
            for s in vanilla + members
        ]
        blocks.append((f"{size:,}, k={k}", rows))
        bars[f"{size:,} (k={k})"] = {label: values[-1] for label, values in rows if values[-1] is not None}
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
    table: dict[str, dict[str, float | None]] = defaultdict(dict)
    for s in scores.settings(mode="none") + scores.settings(mode="out-domain"):
        if s.model in models:
            table[s.sized_label][s.inference_label] = scores.average(s)
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
            best = max((v for v in numbers if v is not None), default=None)
            cells = [_fmt(v, len(numbers) > 1 and v is not None and v == best) for v in numbers]
            lines.append("| " + " | ".join(["", label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def pool_size_curve(scores: Scores, output_dir: Path) -> View:
    """Fig. 5: average F1 against the in-domain pool size N (N=0: no examples), per model."""
    view = View("pool", "In-domain example pool size (Fig. 5): average F1 vs N")
    settings = scores.settings(mode="in-domain")
    if not settings:
        view.skipped = "no results with in-domain examples at inference"
        return view
    series: dict[str, dict[int, float | None]] = defaultdict(dict)
    for s in settings:
        label = f"{s.sized_label}, {_strategy(s.inference_strategy)} k={s.inference_k}"
        series[label][s.pool_size] = scores.average(s)
        for none in scores.settings(mode="none"):
            if none.model == s.model:
                series[label][0] = scores.average(none)
    sizes = sorted({n for points in series.values() for n in points})
    rows = [(label, [points.get(n) for n in sizes]) for label, points in series.items()]
    view.markdown = _row_best_table(["", "Model", *[f"N={n:,}" for n in sizes]], [("", rows)])
    figure = _figure()
    axes = figure.add_subplot()
    for label, points in series.items():
        xs = [i for i, n in enumerate(sizes) if points.get(n) is not None]
        axes.plot(xs, [points[sizes[i]] for i in xs], marker="o", label=label)
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
        (f"{size:,}, {_strategy(strategy)}", [(f"k={s.k}", scores.values(s)) for s in members])
        for (size, strategy), members in groups.items()
    ]
    view.markdown = markdown_table(["Training data", "k", *scores.benchmarks, "Avg"], blocks)
    return view


def build_report(results: dict, output_dir: str | Path, *, source: str | Path | None = None) -> Path:
    """Write every view (Markdown in ``report.md``, plots as PNG) under ``output_dir``; returns report.md."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scores = Scores(results)
    views = [
        main_table(scores),
        size_curve(scores, output_dir),
        strategy_bars(scores, output_dir),
        out_domain_bars(scores, output_dir),
        pool_size_curve(scores, output_dir),
        k_table(scores),
    ]
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
