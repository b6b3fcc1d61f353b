"""Loading an experiment's results table: read ``results.json`` and check its shape, per-sentence counts
included, naming the file and field of anything wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rait.bootstrap import micro_f1
from rait.errors import DataError
from rait.fileio import read_json

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
