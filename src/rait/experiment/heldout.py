"""Choosing a model (and how it is used) by F1 on held-out training passages, asked like a benchmark.

Loss cannot rank decodings or the use of examples at inference, and within-cell losses are not comparable
across recipes (:mod:`.choice`). :func:`heldout_f1` instead asks every candidate, a finished model with one
inference mode (no examples, or out-domain examples) and decoding, about the passages of the common
hold-out (:func:`rait.experiment.choice.common_holdout`: no compared cell trained on them), each passage
about *every* type of one type list, as the benchmarks ask their label sets, so most answers are empty;
each candidate's micro-F1 over these queries (optionally on the mentions a product default keeps: a
threshold, one type per span), and the best one, go to a JSON record. Test sets play no
part."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Sequence

from rait.errors import RaitError
from rait.experiment.cells import EvalCell
from rait.experiment.config import ExperimentConfig
from rait.records import Record

HOLDOUT_BENCHMARK = "heldout"  # the benchmark name of the hold-out's predictions
DEFAULT_TYPES = 20  # the type list: the most frequent types of the training source
RULE = (
    "highest micro-F1 on the common hold-out (passages no compared cell trained on), each passage asked "
    "every type of the type list; ties: the first candidate in plan order"
)


def type_list(records: Sequence[Record], n_types: int = DEFAULT_TYPES) -> list[str]:
    """The ``n_types`` types with the most passages among ``records`` (ties: alphabetical)."""
    if n_types < 1:
        raise RaitError(f"the type list needs at least one type, got {n_types}")
    counts = Counter(t for r in records for t in dict.fromkeys(m.type for m in r.mentions))
    return sorted(counts, key=lambda t: (-counts[t], t))[:n_types]


def holdout_records(
    config: ExperimentConfig,
    cells: Sequence[str] | None = None,
    *,
    types: Sequence[str] | None = None,
    n_types: int = DEFAULT_TYPES,
    max_passages: int | None = None,
) -> list[Record]:
    """The common hold-out's passages (their first ``max_passages``) from the training source, each to
    be asked every type of ``types`` (default: :func:`type_list` of the whole source), its gold the
    mentions of those types."""
    from rait.data import load_source
    from rait.experiment.choice import common_holdout

    if max_passages is not None and max_passages < 1:
        raise RaitError("max_passages must be at least 1")
    held = [c.id for c in common_holdout(config, cells)][:max_passages]
    source, _ = load_source(config.training.source, config.training.format)
    by_id = {r.id: r for r in source}
    asked = list(types) if types is not None else type_list(source, n_types)
    if not asked:
        raise RaitError("the type list is empty")
    wanted = set(asked)
    return [
        Record(
            id=by_id[i].id,
            text=by_id[i].text,
            mentions=[m for m in by_id[i].mentions if m.type in wanted],
            types=asked,
            source=HOLDOUT_BENCHMARK,
        )
        for i in held
    ]


def candidates(config: ExperimentConfig, cells: Sequence[str] | None = None) -> list[EvalCell]:
    """Every trained model's inference modes the config evaluates, without in-domain ones (they need a
    benchmark's labelled pool), one per (model, mode), in plan order; only ``cells`` when given."""
    found = []
    for cell in config.eval_cells():
        if cell.train is None or cell.mode.kind == "in-domain":
            continue
        if cells is not None and cell.train.name not in cells:
            continue
        found.append(EvalCell(cell.train, cell.mode, HOLDOUT_BENCHMARK))
    return list(dict.fromkeys(found))


def heldout_f1(
    config: ExperimentConfig,
    cells: Sequence[str] | None = None,
    *,
    types: Sequence[str] | None = None,
    n_types: int = DEFAULT_TYPES,
    max_passages: int | None = None,
    decoding: str | None = None,
    choice: tuple[float | None, bool] | None = None,
) -> dict:
    """Score every candidate (:func:`candidates`; with ``decoding``, that decoding instead of each mode's)
    on :func:`holdout_records` and choose the one with the highest micro-F1. ``choice``: (threshold,
    multi_label) to keep the mentions a product default keeps (:func:`rait.inference.reselect`: scores at
    least the threshold, unless ``multi_label`` one type per span) before scoring; None keeps every mention.
    Predictions go to ``<output_dir>/heldout/<model>/<mode>/`` (resumable). Models must be finished (those
    of ``cells``); with ``cells`` None, unfinished ones are listed in ``not_compared``.

    Returns ``rule``, ``holdout`` (passages, type list, queries, sha256 of the passage ids), ``choice``
    ({threshold, multi_label} or None), ``rows`` (per candidate: cell, mode, decoding, precision, recall,
    f1, queries, unparseable, predictions file), ``chosen`` ({cell, mode, decoding}) and ``not_compared``."""
    from rait.experiment.choice import _steps
    from rait.experiment.stages import predict_cell, run_evaluate

    records = holdout_records(config, cells, types=types, n_types=n_types, max_passages=max_passages)
    _, models = _steps(config)
    rows, skipped = [], {}
    found = candidates(config, cells)
    if decoding is not None:
        found = [
            EvalCell(c.train, dataclasses.replace(c.mode, decoding=decoding), c.benchmark) for c in found
        ]
    for cell in dict.fromkeys(found):
        step = models[cell.train.name]
        if (status := step.status()) != "done":
            if cells is not None:
                raise RaitError(f"the model of cell {cell.train.name} is {status}: it cannot be compared")
            skipped[cell.train.name] = status
            continue
        mode = cell.mode
        model = config.output_dir / step.read_marker()["result"]["path"]
        out = config.output_dir / HOLDOUT_BENCHMARK / cell.model_name / mode.name
        predictions = predict_cell(config, cell, model, records, out)
        score = run_evaluate(
            config, dataclasses.replace(cell, benchmark=HOLDOUT_BENCHMARK), predictions, choice
        )
        rows.append(
            {
                "cell": cell.train.name,
                "mode": mode.name,
                "decoding": mode.decoding,
                **{k: score.get(k) for k in ("precision", "recall", "f1", "n_queries", "n_unparseable")},
                "predictions": str(predictions.relative_to(config.output_dir)),
            }
        )
    if not rows:
        raise RaitError(f"no finished model to compare in {config.output_dir}")
    best = max(range(len(rows)), key=lambda i: (rows[i]["f1"], -i))
    asked = records[0].types if records else []
    ids = "\n".join(r.id for r in records)
    return {
        "experiment": config.name,
        "output_dir": str(config.output_dir),
        "rule": RULE,
        "holdout": {
            "passages": len(records),
            "types": asked,
            "queries": len(records) * len(asked),
            "gold_mentions": sum(len({(m.text, m.type) for m in r.mentions}) for r in records),
            "ids_sha256": hashlib.sha256(ids.encode("utf-8")).hexdigest(),
        },
        "protocol": config.evaluation.protocol,
        "predict": config.evaluation.predict,
        "choice": None if choice is None else {"threshold": choice[0], "multi_label": choice[1]},
        "rows": rows,
        "chosen": {k: rows[best][k] for k in ("cell", "mode", "decoding")},
        "not_compared": skipped,
    }
