"""Corpus-scale extraction on Ray Data (``pip install 'rait[ray]'``): one model per Ray actor.

:func:`run_predict_ray` is ``rait predict --engine ray``: the passages of the job (benchmarks and/or an input
file: text lines, jsonl or parquet rows, any labelled format) are cut into shards of ``shard_size`` passages;
``Dataset.map_batches`` with a callable class (:class:`ShardPredictor`, one model per actor,
``num_workers`` actors, ``gpus_per_worker`` GPUs each) predicts whole shards, each written atomically as
``<output>/part-NNNNN.jsonl`` (a shard in progress is ``part-NNNNN.jsonl.partial`` and resumes passage by
passage). A re-run skips the finished shards. The shards, read in order, hold exactly the rows a
single-process ``rait predict`` writes. Without ``address`` Ray starts locally (or joins the one this
process already started).

:func:`extract_dataset` does the same for any ``ray.data.Dataset`` of passages through :class:`rait.NER`: it
returns the dataset with an ``entities`` column (the JSON list :meth:`rait.NER.predict_entities` returns)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rait.builtin import resolve_builtin
from rait.errors import RaitError, require
from rait.inference.predict import (
    PredictConfig,
    PredictStats,
    check_settings,
    check_unique_ids,
    config_predictor,
    load_jobs,
    meta_path,
    predict_jobs,
    validate,
)
from rait.locks import lock_path, output_lock
from rait.models import adapter_base_model, is_adapter_dir, resolve_model_path
from rait.records import Record

DEFAULT_SHARD_SIZE = 1000  # passages per output shard: the unit of work and of resuming
SHARD_NAME = "part-{:05d}.jsonl"
PARTIAL_SUFFIX = ".partial"


@dataclass(slots=True)
class RayOptions:
    """Where and how wide a Ray job runs: the cluster ``address`` (None: a local Ray), ``num_workers`` actors
    with ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs each (None: one GPU with the vllm backend, none
    with hf), ``shard_size`` passages per output shard."""

    address: str | None = None
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    shard_size: int = DEFAULT_SHARD_SIZE

    def gpus(self, backend: str) -> float:
        if self.gpus_per_worker is not None:
            return self.gpus_per_worker
        return 1.0 if backend == "vllm" else 0.0

    def check(self) -> None:
        if self.num_workers < 1 or self.shard_size < 1:
            raise RaitError("--num-workers and --shard-size must be at least 1")
        if self.cpus_per_worker <= 0 or (self.gpus_per_worker or 0) < 0:
            raise RaitError("--cpus-per-worker must be above 0 and --gpus-per-worker at least 0")


def shard_path(output: str | Path, index: int) -> Path:
    return Path(output) / SHARD_NAME.format(index)


def shard_files(output: str | Path) -> list[Path]:
    """The finished shards of a ``--engine ray`` output directory, in order."""
    return sorted(Path(output).glob(SHARD_NAME.replace("{:05d}", "[0-9]" * 5)))


class ShardPredictor:
    """A Ray Data callable class: loads the config's model once per actor (``answerer_factory``, when given,
    builds the answerer instead), then predicts each shard it is handed into its file (example pools built
    once per actor too)."""

    def __init__(self, config: PredictConfig, answerer_factory: Callable | None = None):
        self.config = config
        self.answerer = answerer_factory() if answerer_factory else config_predictor(config)
        self.pools: dict = {}  # example pools, built for the first shard that needs them

    def __call__(self, batch: dict) -> dict:
        stats = []
        for index, lang, benchmark, rows in zip(
            batch["shard"], batch["lang"], batch["benchmark"], batch["records"], strict=True
        ):
            final = shard_path(self.config.output, int(index))
            partial = final.with_name(final.name + PARTIAL_SUFFIX)
            records = [Record.from_dict(row) for row in json.loads(rows)]
            job = [(records, lang or None, benchmark or None)]
            done = predict_jobs(replace(self.config, output=partial), job, False, self.answerer, self.pools)
            os.replace(partial, final)
            lock_path(partial).unlink(missing_ok=True)
            stats.append(json.dumps(done.to_dict()))
        return {"shard": batch["shard"], "stats": stats}


def _start_ray(address: str | None, progress: bool):
    """Ray, connected to ``address`` (None: a local Ray) unless this process already is; ``progress``: Ray
    Data's progress reports and the actors' output."""
    ray = require("ray", "ray")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=progress)
    ray.data.DataContext.get_current().enable_progress_bars = progress
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # its errors come back as the raised one
    return ray


def _absolute(config: PredictConfig) -> PredictConfig:
    """The config with its local paths made absolute, for actors whose working directory differs."""
    local = {}
    for name in ("output", "model", "adapter", "pool"):
        value = getattr(config, name)
        if value is not None and (name == "output" or Path(value).expanduser().exists()):
            local[name] = type(value)(Path(value).expanduser().resolve())
    return replace(config, **local)


def _rait_error(exc: BaseException) -> str | None:
    """The message of the RaitError an actor raised, from the errors Ray wraps it in (as an object, or only
    in their text)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RaitError):
            return str(exc)
        if found := _RAIT_ERROR_TEXT.findall(str(exc)):
            return found[-1].strip()
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


_RAIT_ERROR_TEXT = re.compile(r"^rait\.errors\.\w+: (.+)$", re.M)


def run_predict_ray(
    config: PredictConfig,
    options: RayOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    answerer_factory: Callable | None = None,
) -> PredictStats:
    """``rait predict --engine ray`` (see the module docstring): ``config.output`` is the directory of
    shards; ``progress``: Ray Data's progress reports. ``answerer_factory`` (picklable) replaces the config's
    model in every actor (tests)."""
    require("ray.data", "ray")
    options = options or RayOptions()
    options.check()
    validate(config)
    for name in (config.model, config.adapter):  # a missing local path fails here, not in every actor
        if name is not None:
            path = resolve_model_path(resolve_builtin(name))
            if is_adapter_dir(path):
                resolve_model_path(adapter_base_model(path))
    output = Path(config.output)
    if output.exists() and not output.is_dir():
        raise RaitError(f"{output} is a file; --engine ray writes a directory of shards (part-NNNNN.jsonl)")
    jobs = load_jobs(config, log)
    check_unique_ids([record for records, _, _ in jobs for record in records], output)
    with output_lock(output, what="predictions directory"):
        if overwrite:
            shutil.rmtree(output, ignore_errors=True)
            meta_path(output).unlink(missing_ok=True)
        check_settings(config)
        output.mkdir(parents=True, exist_ok=True)
        total, shards, index = PredictStats(), [], 0
        for records, lang, benchmark in jobs:
            for start in range(0, len(records), options.shard_size):
                part = records[start : start + options.shard_size]
                total.n_passages += len(part)
                if shard_path(output, index).is_file():
                    total.n_resumed += len(part)
                else:
                    rows = json.dumps([r.to_dict() for r in part], ensure_ascii=False)
                    shards.append(
                        {"shard": index, "lang": lang or "", "benchmark": benchmark or "", "records": rows}
                    )
                index += 1
        if log is not None:
            log(
                f"{index} shards of at most {options.shard_size} passages, {index - len(shards)} already done"
            )
        if not shards:
            return total
        ray = _start_ray(options.address, progress)
        dataset = ray.data.from_items(shards, override_num_blocks=len(shards))
        results = dataset.map_batches(
            ShardPredictor,
            fn_constructor_kwargs={"config": _absolute(config), "answerer_factory": answerer_factory},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(options.num_workers, len(shards))),
            num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus(config.backend),
        )
        try:
            for row in results.iter_rows():
                for name, value in json.loads(row["stats"]).items():
                    if name != "n_passages":
                        setattr(total, name, getattr(total, name) + value)
                if log is not None:
                    log(f"shard {row['shard']} done -> {shard_path(output, row['shard'])}")
        except Exception as exc:  # Ray wraps an actor's error in its own types
            message = _rait_error(exc)
            if message is None:
                raise
            raise RaitError(message) from None
    return total


class NERPredictor:
    """A Ray Data callable class: one :class:`rait.NER` per actor, an ``entities`` column per batch."""

    def __init__(self, model, types, text_column, batch_size, ner_options):
        import rait

        self.ner = rait.NER.from_pretrained(model, **ner_options)
        self.types, self.text_column, self.batch_size = list(types), text_column, batch_size

    def __call__(self, batch: dict) -> dict:
        if self.text_column not in batch:
            raise RaitError(f"the dataset has no column {self.text_column!r} (columns: {', '.join(batch)})")
        texts = [str(text) for text in batch[self.text_column]]
        found = self.ner.batch_predict_entities(texts, self.types, batch_size=self.batch_size)
        return {**batch, "entities": [json.dumps(e, ensure_ascii=False) for e in found]}


def extract_dataset(
    dataset,
    types: Sequence[str],
    model: str | None = None,
    *,
    text_column: str = "text",
    num_workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
    rows_per_batch: int = 32,
    **ner_options,
):
    """``dataset`` (a ``ray.data.Dataset`` with a ``text_column``) with an ``entities`` column: the JSON list
    of :meth:`rait.NER.predict_entities` for each row, from ``num_workers`` actors holding one model each,
    ``rows_per_batch`` rows per call of :meth:`rait.NER.batch_predict_entities`.
    ``model`` and ``ner_options`` (``adapter``, ``decoding``, ``backend``, ...) go to
    :meth:`rait.NER.from_pretrained`; ``gpus_per_worker`` None: one with ``backend="vllm"``, else none. Lazy,
    like every Ray Data transform: write or iterate the result to run it."""
    require("ray.data", "ray")
    if isinstance(types, str) or not types:
        raise RaitError("types must be a non-empty list of entity type names")
    options = RayOptions(
        num_workers=num_workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker
    )
    options.check()
    ray = require("ray", "ray")
    return dataset.map_batches(
        NERPredictor,
        fn_constructor_args=(model, list(types), text_column, rows_per_batch, ner_options),
        batch_size=rows_per_batch,
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=cpus_per_worker,
        num_gpus=options.gpus(ner_options.get("backend", "hf")),
    )
