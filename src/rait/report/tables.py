"""Markdown: formatting of scores (with intervals), the generic block table (best per block or per row in
bold), the decoding stop counts and the plain results table (``results.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean

from rait.bootstrap import Estimate
from rait.report.scores import Cell, Setting


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
    facts = [f"{done} of {done + missing} eval cells done"]
    facts += [f"scored with the `{results['protocol']}` protocol"] if results.get("protocol") else []
    facts += [choice] if (choice := choice_fact(results)) else []
    lines = [
        f"# Results: {results.get('experiment', '')}",
        "",
        f"Micro-F1 (%) per benchmark; {'; '.join(facts)}.",
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


def choice_fact(results: dict) -> str:
    """How the mentions were chosen again by score before scoring (``rait experiment --collect
    --threshold``), or ``""``."""
    if (choice := results.get("choice")) is None:
        return ""
    types = "every type of a span" if choice["multi_label"] else "one type per span"
    threshold = choice["threshold"]
    if isinstance(threshold, dict):
        each = ", ".join(f"{model} {value:g}" for model, value in threshold.items())
        return f"mentions chosen again by score: threshold per model ({each}), {types}"
    return f"mentions chosen again by score: threshold {threshold:g}, {types}"
