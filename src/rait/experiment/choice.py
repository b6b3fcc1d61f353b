"""Choosing the one model of a study that rait ships as its built-in NER model.

Within-cell validation losses (:mod:`.selection`) pick a cell's learning rate and epochs but cannot be
compared across cells: an RA-IT conversation has an extra examples turn and an extra, trivially predictable
assistant turn ("I've read these examples."), and cells of other sizes or seeds hold out other passages.
:func:`compare_models` scores every finished model on the same conversations instead: the *common
hold-out* (:func:`common_holdout`), passages no trained cell saw, in the vanilla format (no examples, as the
built-in model is used by default), by mean assistant-token loss. Test sets play no part.
:func:`shipped_scores` then gives the chosen model's test F1 for its metadata."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from rait.bootstrap import DEFAULT_SAMPLES, DEFAULT_SEED
from rait.errors import RaitError
from rait.experiment.config import ExperimentConfig
from rait.experiment.runner import Step, collect_results, plan
from rait.experiment.selection import SEARCHED, validation_loss
from rait.precision import DEFAULT_PRECISION
from rait.records import Conversation

RULE = (
    "lowest mean assistant-token loss (token-weighted, no examples turn) on the common hold-out: the "
    "vanilla conversations of the passages no compared cell trained on; ties: the first in plan order"
)


def _steps(config: ExperimentConfig) -> tuple[dict[str, Step], dict[str, Step]]:
    """Per training cell, in plan order: its build step, and its model step (``select`` or ``train``)."""
    builds, models = {}, {}
    for step in plan(config):
        if step.stage == "build":
            builds[step.name] = step
        elif step.stage in ("select", "train") and step.name == step.cell.name:
            models[step.name] = step
    return builds, models


def _check_cells(builds: dict[str, Step], cells: Sequence[str] | None) -> list[str]:
    if cells is None:
        return list(builds)
    if not cells:
        raise RaitError("cells is empty: name at least one training cell")
    unknown = [name for name in cells if name not in builds]
    if unknown:
        raise RaitError(f"no training cell {', '.join(unknown)} in the config; cells: {', '.join(builds)}")
    return list(dict.fromkeys(cells))


def _load(step: Step, root: Path, loaded: dict) -> list[Conversation]:
    from rait.training.data import load_conversations

    if step.name not in loaded:
        status = step.status()
        if status != "done":
            why = "is not built yet" if status == "todo" else "was built with other settings than the config"
            raise RaitError(
                f"the data of cell {step.name} {why}: the passages it trains on are unknown; "
                "restrict the comparison to finished models (cells=, --cells)"
            )
        conversations = load_conversations([root / step.read_marker()["result"]["path"]])
        if not all(c.id for c in conversations):
            raise RaitError(f"the data of cell {step.name} has conversations without a passage id")
        loaded[step.name] = conversations
    return loaded[step.name]


def _holdout(config: ExperimentConfig, cells: Sequence[str] | None) -> tuple[list[Conversation], list[str]]:
    from rait.training import TrainConfig
    from rait.training.data import split_validation

    builds, _ = _steps(config)
    names, root, loaded = _check_cells(builds, cells), config.output_dir, {}
    fraction = float(config.training.hyper.get("validation_fraction", TrainConfig().validation_fraction))
    trained: set[str] = set()
    for name in names:  # exactly as the trainer splits: rait.training.loop, seed = the cell's seed
        part, _ = split_validation(_load(builds[name], root, loaded), fraction, builds[name].cell.seed)
        trained |= {c.id for c in part}
    vanilla = [s for s in builds.values() if s.cell.method == "vanilla" and s.status() == "done"]
    if not vanilla:
        raise RaitError("no vanilla cell's data is built: the common hold-out is taken from vanilla data")
    vanilla.sort(key=lambda step: -step.cell.size)  # the largest first; stable: plan order on a tie
    held, seen = [], set(trained)
    for step in vanilla:
        for conversation in _load(step, root, loaded):
            if conversation.id not in seen:
                seen.add(conversation.id)
                held.append(conversation)
    if not held:
        raise RaitError(
            f"the common hold-out is empty: {', '.join(names)} trained on every passage of the vanilla data "
            f"({', '.join(s.name for s in vanilla)}); hold some out (training.hyper.validation_fraction)"
        )
    return held, [s.name for s in vanilla]


def common_holdout(config: ExperimentConfig, cells: Sequence[str] | None = None) -> list[Conversation]:
    """The vanilla-format conversations (no examples) of the passages that no training cell of ``config``
    (or of ``cells`` only) trained on: each cell's conversations minus its validation hold-out, split as the
    trainer splits them (``validation_fraction``, the cell's seed), are excluded by passage id. Taken from
    the built vanilla cells' data, the largest first, in file order, each passage once.

    Raises :class:`RaitError` when a cell's data is not built (its training passages are unknown), no
    vanilla data is built, or nothing is left."""
    return _holdout(config, cells)[0]


def holdout_loss(
    model_dir: str | Path, conversations: Sequence[Conversation], *, precision: str = DEFAULT_PRECISION
) -> dict:
    """Mean loss of a trained adapter on the assistant tokens of ``conversations``, token-weighted over the
    whole set, in eval mode (no dropout) without gradients, encoded as it was trained (its
    ``rait_train_config.json``: system prompt, max_length, length rule; its saved tokenizer and template).
    Returns ``loss``, ``conversations``, ``examples`` (left after the length rule) and ``tokens`` scored."""
    import torch
    import torch.nn.functional as F

    from rait.chat import IGNORE_INDEX
    from rait.fileio import read_json
    from rait.models import TRAIN_CONFIG_FILE, default_device, load_model
    from rait.precision import precision_dtype, resolve_precision
    from rait.training import TrainConfig
    from rait.training.data import encode_conversations

    model_dir = Path(model_dir)
    if not (model_dir / TRAIN_CONFIG_FILE).is_file():
        raise RaitError(f"{model_dir} is not a rait training run (no {TRAIN_CONFIG_FILE})")
    trained = TrainConfig.from_dict(read_json(model_dir / TRAIN_CONFIG_FILE), source=model_dir)
    device = default_device()
    dtype = precision_dtype(resolve_precision(precision, device))
    model, tokenizer = load_model(str(model_dir), device=device, dtype=dtype, merge=False)  # as trained
    data = encode_conversations(
        tokenizer, conversations, trained.max_length, trained.length_rule, trained.system_prompt
    )
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for example in data.examples:
            ids = torch.tensor([example["input_ids"]], device=device)
            targets = torch.tensor(example["labels"][1:], device=device)  # position p predicts token p + 1
            keep = (targets != IGNORE_INDEX).nonzero().squeeze(1)
            logits = model(input_ids=ids, logits_to_keep=keep).logits[0].float()
            total += F.cross_entropy(logits, targets[keep], reduction="sum").item()
            tokens += keep.numel()
    if not tokens:
        raise RaitError(f"no assistant token of the hold-out is left within {model_dir}'s max_length")
    n = len(conversations)
    return {"loss": total / tokens, "conversations": n, "examples": len(data.examples), "tokens": tokens}


def compare_models(
    config: ExperimentConfig,
    cells: Sequence[str] | None = None,
    *,
    max_conversations: int | None = None,
    precision: str = DEFAULT_PRECISION,
) -> dict:
    """Every finished model of ``config`` (or of ``cells``, which must all be finished) scored by
    :func:`holdout_loss` on :func:`common_holdout` (its first ``max_conversations``), and the one to ship.

    Exists because within-cell validation losses are not comparable across methods (see the module).
    Returns ``rows`` (per model in plan order: cell, path, selected hyper-parameters, ``selected_by``,
    within-cell ``validation_loss``, ``holdout_loss``, conversations, examples, tokens), ``chosen`` and
    ``chosen_path`` (the lowest hold-out loss; ties: the first), ``holdout`` (passages, conversations
    scored, vanilla cells taken from, sha256 of the passage ids in order) and ``not_compared`` (cells whose
    model is unfinished or stale, with ``cells`` None)."""
    if max_conversations is not None and max_conversations < 1:
        raise RaitError("max_conversations must be at least 1")
    from rait.training import TrainConfig

    _, models = _steps(config)
    hyper, defaults = config.training.hyper, TrainConfig()
    held, sources = _holdout(config, cells)
    used = held[:max_conversations]
    rows, skipped = [], {}
    for name, step in models.items():
        if cells is not None and name not in cells:
            continue
        if (status := step.status()) != "done":
            if cells is not None:
                why = "has not finished" if status == "todo" else "was made with other settings"
                raise RaitError(f"the model of cell {name} {why}: it cannot be compared")
            skipped[name] = status
            continue
        result = step.read_marker()["result"]
        path = config.output_dir / result["path"]
        selected = result.get("selected") or {k: hyper.get(k, getattr(defaults, k)) for k in SEARCHED}
        scored = holdout_loss(path, used, precision=precision)
        rows.append(
            {
                "cell": name,
                "path": result["path"],
                "selected": selected,
                "selected_by": result.get("selected_by"),
                "validation_loss": validation_loss(path),
                "holdout_loss": scored.pop("loss"),
                **scored,
            }
        )
    if not rows:
        raise RaitError(f"no finished model to compare in {config.output_dir}")
    best = min(range(len(rows)), key=lambda i: rows[i]["holdout_loss"])
    ids = "\n".join(c.id for c in used)
    return {
        "experiment": config.name,
        "output_dir": str(config.output_dir),
        "rule": RULE,
        "holdout": {
            "passages": len(held),
            "conversations_scored": len(used),
            "from": sources,
            "ids_sha256": hashlib.sha256(ids.encode("utf-8")).hexdigest(),
        },
        "rows": rows,
        "chosen": rows[best]["cell"],
        "chosen_path": rows[best]["path"],
        "not_compared": skipped,
    }


def shipped_scores(
    config: ExperimentConfig,
    cell: str,
    results: dict | None = None,
    *,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict | None:
    """The ``scores`` metadata of a shipped model: F1 of training cell ``cell`` without examples at inference,
    per decoding (``"free decoding"``, ...), per benchmark and on average, with 95% bootstrap intervals
    (:func:`rait.report.scores_json`), rounded to 2 decimals; with the experiment's name, test sentences per
    benchmark, protocol and the interval's method. From ``results`` (default: :func:`collect_results`, the
    finished eval cells); None when ``cell`` has no finished eval cell without examples."""
    from rait.report import scores_json

    results = results if results is not None else collect_results(config)
    rows = [row for row in results["rows"] if row["model"] == cell and row["mode"] == "none"]
    if not rows:
        return None
    table = scores_json({**results, "rows": rows}, samples=samples, seed=seed)
    f1 = {}
    for setting in table["settings"]:
        found = {**setting["benchmarks"], **({"average": setting["average"]} if setting["average"] else {})}
        f1[f"{setting['decoding']} decoding"] = {
            name: {k: round(v[k], 2) for k in ("f1", "low", "high") if k in v} for name, v in found.items()
        }
    interval = table["interval"]
    return {
        "experiment": config.name,
        "test_sentences_per_benchmark": config.evaluation.max_examples,
        "protocol": config.evaluation.protocol,
        "interval": "unavailable: the results have no per-sentence counts"
        if interval is None
        else f"{interval['method']}, {interval['samples']:,} resamples, seed {interval['seed']}",
        "f1": f1,
    }
