"""Adapters from the runner to the real stages: build_data, train, predict and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rait.experiment.cells import EvalCell, TrainCell
from rait.experiment.config import PREDICT_DEFAULTS, ExperimentConfig, ExperimentError
from rait.experiment.selection import validation_loss
from rait.fileio import write_json
from rait.precision import DEFAULT_PRECISION


@dataclass(frozen=True, slots=True)
class Stages:
    """The stage calls the runner makes; each writes only under the directory it is given.

    ``build(config, cell, out_dir) -> data file``; ``train(config, cell, data, out_dir) -> model dir``;
    ``predict(config, cell, model, out_dir) -> predictions file`` (``model`` None = the base model);
    ``evaluate(config, cell, predictions) -> metrics`` (precision, recall, f1, n_queries, n_unparseable);
    ``validation_loss(model dir) -> best validation loss`` (model selection, ``training.search``)."""

    build: Callable[[ExperimentConfig, TrainCell, Path], Path]
    train: Callable[[ExperimentConfig, TrainCell, Path, Path], Path]
    predict: Callable[[ExperimentConfig, EvalCell, Path | None, Path], Path]
    evaluate: Callable[[ExperimentConfig, EvalCell, Path], dict]
    validation_loss: Callable[[Path], float | None] = validation_loss


def run_build(config: ExperimentConfig, cell: TrainCell, out_dir: Path) -> Path:
    """:func:`rait.build_data.build_data` for one training cell: ``train.jsonl`` + its manifest. ``config``
    is the cell's (:meth:`ExperimentConfig.for_cell`)."""
    from rait.build_data import BuildConfig, build_data

    output = out_dir / "train.jsonl"
    build_data(
        BuildConfig(
            source=config.training.source,
            output=output,
            method=cell.method,
            k=cell.k or 2,
            strategy=cell.strategy or "nn",
            size=cell.size,
            lang=config.lang,
            embedder=config.embedder,
            seed=cell.seed,
            source_format=config.training.format,
            **config.training.build,
        )
    )
    return output


def train_config(config: ExperimentConfig, cell: TrainCell, data: Path, out_dir: Path):
    """The :class:`rait.training.TrainConfig` of one cell's training (resuming from its last checkpoint)."""
    from rait.training import TrainConfig

    options = {
        **config.training.hyper,
        "data": [str(data)],
        "output_dir": str(out_dir),
        "model": config.model,
        "seed": cell.training_seed,
        "resume": True,
    }
    if cell.train_seed is not None:  # another run on the same data: the sample's hold-out
        options["split_seed"] = cell.seed
    return TrainConfig.from_dict(options, source=config.path or "experiment")


def run_train(config: ExperimentConfig, cell: TrainCell, data: Path, out_dir: Path) -> Path:
    """:func:`rait.training.train` on one cell's data; resumes from the cell's last checkpoint. ``config``
    is the cell's (:meth:`ExperimentConfig.for_cell`)."""
    from rait.training import train

    return train(train_config(config, cell, data, out_dir))


def train_key(config: ExperimentConfig, cell: TrainCell, data: Path, out_dir: Path) -> str:
    """The adapter store's key of one cell's training (:func:`rait.experiment.adapters.training_key`)."""
    from rait.experiment.adapters import training_key
    from rait.models import default_device
    from rait.precision import resolve_precision

    options = train_config(config, cell, data, out_dir)
    return training_key(options.to_dict(), resolve_precision(options.precision, default_device()), data)


@lru_cache(maxsize=1)
def _answerer(
    model: str,
    adapter: str | None,
    backend: str,
    lang: str,
    max_new_tokens: int,
    batch_size: int,
    precision: str = DEFAULT_PRECISION,
    system_prompt: str = "none",
    stop_repetition: bool = True,
    decoding: str = "free",
):
    """The last model loaded, kept for the next eval cells (they come grouped by model and decoding)."""
    from rait.inference import load_predictor

    return load_predictor(
        model,
        adapter=adapter,
        backend=backend,
        lang=lang,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        precision=precision,
        system_prompt=system_prompt,
        stop_repetition=stop_repetition,
        decoding=decoding,
    )


@lru_cache(maxsize=2)
def _out_domain_pool(source: str, fmt: str | None, lang: str, embedder: str | None, size: int, seed: int):
    from rait.retrieval import ExamplePool, get_embedder

    return ExamplePool.from_source(source, get_embedder(embedder, lang), lang, fmt=fmt, size=size, seed=seed)


def _benchmark_records(config: ExperimentConfig, name: str) -> list:
    from rait.data.benchmarks import load_benchmark

    ev = config.evaluation
    if name not in ev.files:
        return load_benchmark(name, "test", max_examples=ev.max_examples, seed=ev.seed)
    return ev.files[name].load(ev.max_examples, ev.seed, config.lang)


def run_predict(config: ExperimentConfig, cell: EvalCell, model: Path | None, out_dir: Path) -> Path:
    """Answer every (passage, type) query of the cell's benchmark into ``predictions.jsonl`` (resumable),
    with the mode's retrieved examples; ``model`` is the trained adapter, None for the base model.
    What this run did (passages resumed, predicted, given examples) goes to ``predict_stats.json``."""
    return predict_cell(config, cell, model, _benchmark_records(config, cell.benchmark), out_dir)


def predict_cell(
    config: ExperimentConfig, cell: EvalCell, model: Path | None, records: list, out_dir: Path
) -> Path:
    """:func:`run_predict` on given ``records`` (a benchmark's, or a hold-out's): the cell's model (an
    adapter, a fully fine-tuned model, or None: the base model), inference mode and decoding."""
    from rait.inference import predict_records
    from rait.models import is_adapter_dir
    from rait.retrieval import ExamplePool, Retriever, get_embedder

    options = {**PREDICT_DEFAULTS, **config.evaluation.predict}
    base, adapter = config.model, str(model) if model else None
    if model is not None and not is_adapter_dir(model):  # fully fine-tuned: the model itself
        base, adapter = str(model), None
    answerer = _answerer(
        base,
        adapter,
        options["backend"],
        config.lang,
        options["max_new_tokens"],
        options["batch_size"],
        options["precision"],
        # the base model is asked as the tuned ones
        config.for_cell(cell.train).training.hyper.get("system_prompt", "none"),
        options["stop_repetition"],
        cell.mode.decoding,
    )
    examples = None
    mode = cell.mode
    if mode.kind != "none":
        if mode.kind == "out-domain":
            pool = _out_domain_pool(
                config.training.source,
                config.training.format,
                config.lang,
                config.embedder,
                *config.pool_sample(cell.train),
            )
        else:
            pool = ExamplePool.from_benchmark(
                cell.benchmark,
                mode.pool_size,
                seed=config.evaluation.seed,
                embedder=get_embedder(config.embedder, config.lang),
            )
        examples = Retriever(
            pool,
            mode.k,
            options["bm25_threshold"],
            config.evaluation.seed,
            options["allow_identical_examples"],
            strategy=mode.strategy,
            K=options["K"],
            mixed_ratio=options["mixed_ratio"],
            by_id=True,
        )

    output = out_dir / "predictions.jsonl"
    stats = predict_records(
        records,
        answerer,
        output,
        examples=examples,
        lang=config.lang,
        chunk_size=options["chunk_size"],
        threshold=options["threshold"] or None,
        multi_label=options["multi_label"],
    )
    write_json(out_dir / "predict_stats.json", stats.to_dict())
    return output


def chosen_rows(rows: list, choice: tuple[float | None, bool] | None, predictions: Path) -> list:
    """The rows read from ``predictions``, with ``choice`` (threshold, multi_label) their mentions chosen
    again from their scores (:func:`rait.inference.reselect`)."""
    from rait.inference import reselect

    if choice is None:
        return rows
    try:
        return reselect(rows, *choice)
    except ValueError as exc:
        raise ExperimentError(f"{predictions}: {exc}") from None


def run_evaluate(
    config: ExperimentConfig, cell: EvalCell, predictions: Path, choice: tuple[float, bool] | None = None
) -> dict:
    """UniversalNER micro scores of one cell's predictions (:func:`rait.evaluation.evaluate_file`), with the
    config's scoring protocol, and ``sentences``: [n_correct, n_pred, n_gold] per test sentence id, for the
    report's bootstrap. ``choice``: (threshold, multi_label) to choose the mentions again from their scores
    first (:func:`rait.inference.reselect`), as a product default would."""
    from rait.evaluation import evaluate, read_prediction_files

    rows = chosen_rows(read_prediction_files([predictions]), choice, predictions)
    report = evaluate(rows, protocol=config.evaluation.protocol)
    scores = report.to_dict()["benchmarks"]
    if cell.benchmark not in scores:
        raise ExperimentError(f"{predictions} has no predictions for {cell.benchmark}")
    return {**scores[cell.benchmark], "sentences": report.sentences[cell.benchmark]}


def default_stages() -> Stages:
    """The real stages: build_data, train, predict, evaluation."""
    return Stages(run_build, run_train, run_predict, run_evaluate)
