"""Matplotlib helpers of the report: a figure on the Agg canvas, atomic PNG saving, asymmetric error bars
from intervals, grouped bars and the paired-difference plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rait.bootstrap import Estimate
from rait.fileio import atomic_write
from rait.report.scores import Cell
from rait.report.tables import _value


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


def _yerr(cells: Sequence[Cell]) -> list[list[float]] | None:
    """Asymmetric error bars (below, above) for cells with intervals; None when no cell has one."""
    if not any(isinstance(c, Estimate) for c in cells):
        return None
    return [
        [c.value - c.low if isinstance(c, Estimate) else 0.0 for c in cells],
        [c.high - c.value if isinstance(c, Estimate) else 0.0 for c in cells],
    ]


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
