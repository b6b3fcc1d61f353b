"""Choosing a model (and how it is used) by F1 on held-out data asked like a benchmark.

Loss cannot rank decodings or the use of examples at inference, and within-cell losses are not comparable
across recipes (:mod:`.choice`). :func:`heldout_f1` instead asks every candidate, a finished model with one
inference mode (no examples, or out-domain examples) and decoding, about one of two held-out sets:

- ``training``: the passages of the common hold-out of the training source
  (:func:`rait.experiment.choice.common_holdout`: no compared cell trained on them), each asked *every*
  type of one type list, as the benchmarks ask their label sets, so most answers are empty; micro-F1;
- ``benchmarks``: seeded sentences of each evaluation benchmark's held-out split (dev, else train: MIT has
  no dev split), each asked every type of its benchmark; the average F1 over the benchmarks, as the test
  sets are scored.

Each candidate's F1 (optionally on the mentions a product default keeps: a threshold, one type per span,
or each candidate's best threshold), and the best one, go to a JSON record. Test sets play no part."""

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
HELDOUT_SETS = ("training", "benchmarks")
DEFAULT_PER_BENCHMARK = 40  # held-out sentences per benchmark (heldout "benchmarks")
RULES = {
    "training": "highest micro-F1 on the common hold-out (passages no compared cell trained on), each "
    "passage asked every type of the type list; ties: the first candidate in plan order",
    "benchmarks": "highest average F1 over the benchmarks' held-out sentences (dev split, else train), each "
    "asked every type of its benchmark; ties: the first candidate in plan order",
}


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


def heldout_split(name: str) -> str:
    """The held-out split of a registered benchmark: ``dev``, else ``train``."""
    from rait.data.benchmarks import get_spec

    splits = get_spec(name).splits
    for split in ("dev", "train"):
        if split in splits:
            return split
    raise RaitError(f"benchmark {name} has no dev or train split to hold out")


def benchmark_records(config: ExperimentConfig, per_benchmark: int = DEFAULT_PER_BENCHMARK) -> list[Record]:
    """``per_benchmark`` sentences (the config's evaluation seed) of the held-out split
    (:func:`heldout_split`) of each of the config's benchmarks, each asked every type of its benchmark."""
    from rait.data import load_benchmark

    if per_benchmark < 1:
        raise RaitError("per_benchmark must be at least 1")
    seed = config.evaluation.seed
    return [
        record
        for name in config.evaluation.benchmarks
        for record in load_benchmark(name, heldout_split(name), max_examples=per_benchmark, seed=seed)
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
    thresholds: Sequence[float] | None = None,
    heldout: str = "training",
    per_benchmark: int = DEFAULT_PER_BENCHMARK,
) -> dict:
    """Score every candidate (:func:`candidates`; with ``decoding``, that decoding instead of each mode's)
    on one held-out set (``heldout``, one of :data:`HELDOUT_SETS`: :func:`holdout_records` with ``types``,
    ``n_types`` and ``max_passages``, or :func:`benchmark_records` with ``per_benchmark``) and choose the
    one with the highest F1 (micro; averaged over the benchmarks for ``benchmarks``). ``choice``: (threshold,
    multi_label) to keep the mentions a product default keeps (:func:`rait.inference.reselect`: scores at
    least the threshold, unless ``multi_label`` one type per span) before scoring; None keeps every mention.
    ``thresholds`` (with ``choice``, whose threshold it replaces): each candidate is scored at each of them
    and keeps its best (ties: the lowest), as a model shipped with its own threshold would be used.
    Predictions go to ``<output_dir>/heldout/<model>/<mode>/`` (``heldout-benchmarks/...`` for the
    benchmarks; resumable). Models must be finished (those
    of ``cells``); with ``cells`` None, unfinished ones are listed in ``not_compared``.

    Returns ``rule``, ``holdout`` (the set, passages, type list or benchmarks, queries, sha256 of the
    passage ids), ``choice``
    ({threshold, multi_label, and with ``thresholds`` the list} or None), ``rows`` (per candidate: cell,
    mode, decoding, threshold, precision, recall, f1, queries, unparseable, predictions file; with
    ``thresholds`` its ``curve``: threshold, precision, recall, f1 at each), ``chosen`` ({cell, mode,
    decoding, threshold}) and ``not_compared``."""
    from rait.evaluation import read_prediction_files
    from rait.experiment.choice import _steps
    from rait.experiment.stages import predict_cell

    if thresholds is not None and (choice is None or not thresholds):
        raise RaitError("thresholds to choose from go with a choice of mentions (threshold, multi_label)")
    if heldout not in HELDOUT_SETS:
        raise RaitError(f"unknown held-out set {heldout!r}; choose one of {', '.join(HELDOUT_SETS)}")
    if heldout == "training":
        records = holdout_records(config, cells, types=types, n_types=n_types, max_passages=max_passages)
        folder = HOLDOUT_BENCHMARK
    else:
        records = benchmark_records(config, per_benchmark)
        folder = f"{HOLDOUT_BENCHMARK}-benchmarks"
    tried = [None if choice is None else choice[0]] if thresholds is None else sorted(set(thresholds))
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
        out = config.output_dir / folder / cell.model_name / mode.name
        predictions = predict_cell(config, cell, model, records, out)
        answered = read_prediction_files([predictions])
        curve = [
            (t, _score(config, answered, predictions, None if choice is None else (t, choice[1])))
            for t in tried
        ]
        threshold, score = max(curve, key=lambda point: (point[1]["f1"], -(point[0] or 0)))
        rows.append(
            {
                "cell": cell.train.name,
                "mode": mode.name,
                "decoding": mode.decoding,
                "threshold": threshold,
                **{k: score.get(k) for k in ("precision", "recall", "f1", "n_queries", "n_unparseable")},
                "predictions": str(predictions.relative_to(config.output_dir)),
            }
        )
        if thresholds is not None:
            keys = ("precision", "recall", "f1")
            rows[-1]["curve"] = [{"threshold": t, **{k: point[k] for k in keys}} for t, point in curve]
    if not rows:
        raise RaitError(f"no finished model to compare in {config.output_dir}")
    best = max(range(len(rows)), key=lambda i: (rows[i]["f1"], -i))
    ids = "\n".join(r.id for r in records)
    held = {"set": heldout, "passages": len(records)}
    if heldout == "training":
        held["types"] = records[0].types if records else []
    else:
        held |= {"benchmarks": list(config.evaluation.benchmarks), "per_benchmark": per_benchmark}
    return {
        "experiment": config.name,
        "output_dir": str(config.output_dir),
        "rule": RULES[heldout],
        "holdout": held
        | {
            "queries": sum(len(r.types or ()) for r in records),
            "gold_mentions": sum(len({(m.text, m.type) for m in r.mentions}) for r in records),
            "ids_sha256": hashlib.sha256(ids.encode("utf-8")).hexdigest(),
        },
        "protocol": config.evaluation.protocol,
        "predict": config.evaluation.predict,
        "choice": _choice_record(choice, thresholds),
        "rows": rows,
        "chosen": {k: rows[best][k] for k in ("cell", "mode", "decoding", "threshold")},
        "not_compared": skipped,
    }


def _choice_record(
    choice: tuple[float | None, bool] | None, thresholds: Sequence[float] | None
) -> dict | None:
    """How the scored mentions were kept: None (every one), or the threshold (or the thresholds each
    candidate chose from) and ``multi_label``."""
    if choice is None:
        return None
    if thresholds is None:
        return {"threshold": choice[0], "multi_label": choice[1]}
    return {"thresholds": sorted(set(thresholds)), "multi_label": choice[1]}


def chosen_thresholds(record: dict, source: str = "the held-out record") -> tuple[dict[str, float], bool]:
    """Per model, the threshold of its best row in a :func:`heldout_f1` record written with
    ``thresholds`` (each candidate at its own best threshold), and the record's ``multi_label``."""
    choice = record.get("choice") if isinstance(record, dict) else None
    if not isinstance(choice, dict) or "thresholds" not in choice:
        raise RaitError(f"{source}: not a held-out F1 record with a threshold chosen per candidate")
    best: dict[str, tuple[float, float]] = {}
    for number, row in enumerate(record.get("rows") or [], start=1):
        try:
            cell, f1, threshold = row["cell"], float(row["f1"]), float(row["threshold"])
        except (KeyError, TypeError, ValueError):
            raise RaitError(f"{source}: row {number} needs a cell, its f1 and its threshold") from None
        if cell not in best or f1 > best[cell][0]:
            best[cell] = (f1, threshold)
    if not best:
        raise RaitError(f"{source}: no candidate rows")
    return {cell: threshold for cell, (_, threshold) in best.items()}, bool(choice["multi_label"])


def _score(
    config: ExperimentConfig, rows: list, predictions, choice: tuple[float | None, bool] | None
) -> dict:
    """Precision, recall and F1 (averaged over the benchmarks), queries and unparseable answers of the rows
    of a predictions file, their mentions chosen again by ``choice`` first
    (:func:`rait.inference.reselect`)."""
    from rait.evaluation import evaluate
    from rait.experiment.stages import chosen_rows

    report = evaluate(chosen_rows(rows, choice, predictions), protocol=config.evaluation.protocol)
    return {
        "precision": report.average_precision,
        "recall": report.average_recall,
        "f1": report.average_f1,
        "n_queries": report.n_queries,
        "n_unparseable": report.n_unparseable,
    }
