"""The runner: plans an experiment's steps, skips finished ones by their done-markers, runs the rest and
collects the results table."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rait.experiment.adapters import stored_training
from rait.experiment.cells import EvalCell, TrainCell
from rait.experiment.config import ExperimentConfig, ExperimentError
from rait.experiment.selection import SEARCHED, candidate_name, select
from rait.experiment.settings import EXECUTION_SETTINGS, execution_settings
from rait.experiment.stages import (
    Stages,
    _answerer,
    _out_domain_pool,
    default_stages,
    run_evaluate,
    train_key,
)
from rait.fileio import atomic_write, check_output_dir, read_json, write_json
from rait.locks import output_lock

DONE_NAME = "DONE.json"
STARTED_NAME = "STARTED.json"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


@dataclass(slots=True)
class Step:
    """One unit of work in its own directory, finished by a done-marker holding ``params`` and the result."""

    stage: str  # "build", "train", "select" (training.search) or "eval"
    name: str
    directory: Path
    params: dict
    action: Callable[[], dict]
    cell: TrainCell | EvalCell

    @property
    def marker(self) -> Path:
        return self.directory / DONE_NAME

    def read_marker(self) -> dict | None:
        return read_json(self.marker) if self.marker.exists() else None

    @property
    def started(self) -> Path:
        return self.directory / STARTED_NAME

    def status(self) -> str:
        """``done``, ``todo``, or ``stale`` (finished, or left half-done, with other settings than the
        config's: its partial outputs must not be resumed into)."""
        marker = self.read_marker()
        if marker is None and self.started.exists():
            return "todo" if self.made_with_current_settings(read_json(self.started)) else "stale"
        if marker is None:
            return "todo"
        return "done" if self.made_with_current_settings(marker) else "stale"

    def made_with_current_settings(self, marker: dict) -> bool:
        """Whether a marker's settings match the config's, execution-only settings aside."""
        return _result_settings(marker.get("params", {})) == _result_settings(_jsonable(self.params))


def _system_prompt_param(config: ExperimentConfig) -> dict:
    """The base model's system prompt (the training one), left out when none: older steps stay done."""
    system_prompt = config.training.hyper.get("system_prompt", "none")
    return {} if system_prompt == "none" else {"system_prompt": system_prompt}


def _precision_param(precision: str | None) -> dict:
    """A step's precision as resolved on this machine, left out when fp32: steps finished before the option
    existed computed in fp32 (on CPU) and stay done; under bf16 they count as made with other settings."""
    from rait.models import default_device
    from rait.precision import resolve_precision

    resolved = resolve_precision(precision, default_device())
    return {} if resolved == "fp32" else {"precision": resolved}


def _embeds(config: ExperimentConfig, cell: TrainCell) -> bool:
    """Whether building ``cell``'s data uses the embedder: RA-IT retrieval, or hard negative types."""
    return (
        cell.method == "ra-it" or config.training.build.get("negative_sampling", "frequency") != "frequency"
    )


def _result_settings(params):
    """``params`` without :data:`EXECUTION_SETTINGS`, at any depth (eval steps nest their model's). With a
    validation hold-out ``save_steps`` stays: checkpoints are where validation picks the kept adapter."""
    if not isinstance(params, dict):
        return params
    return {
        key: {k: v for k, v in value.items() if k not in execution_settings(key, value)}
        if key in EXECUTION_SETTINGS and isinstance(value, dict)
        else _result_settings(value)
        for key, value in params.items()
    }


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _store_path(path: Path, root: Path) -> str:
    """Paths inside the output directory are stored relative to it, so the directory can be moved."""
    path, root = Path(path).resolve(), root.resolve()
    return os.path.relpath(path, root) if path.is_relative_to(root) else str(path)


def plan(config: ExperimentConfig, stages: Stages | None = None) -> list[Step]:
    """Every step, dependencies first: per model (the base model last) its dataset, its training (with
    ``training.search``: one run per candidate, then the ``select`` step), its eval cells. A dataset and a
    model are made once, whatever number of cells use them."""
    stages = stages or default_stages()
    root = config.output_dir
    if config.adapters is not None:  # restore committed adapters instead of training; store new ones
        train = stored_training(stages.train, train_key, config.adapters, config.name, root / "train")
        stages = dataclasses.replace(stages, train=train)
    steps: list[Step] = []
    trained: dict[TrainCell, Step] = {}
    built: dict[TrainCell, Step] = {}

    def result_path(step: Step) -> Path:
        marker = step.read_marker()
        if marker is None:
            raise ExperimentError(f"{step.stage} step {step.name} has not finished ({step.marker} missing)")
        return root / marker["result"]["path"]

    def build_step(cell: TrainCell) -> Step:
        """The dataset of ``cell``'s sample, shared by the cells that differ only in the training seed."""
        sample = dataclasses.replace(cell, train_seed=None)
        if sample not in built:
            data_dir = root / "data" / sample.name
            cfg = config.for_cell(sample)
            params = {
                "lang": config.lang,
                "source": config.training.source,
                "format": config.training.format,
                **sample.describe(),
                "build": cfg.training.build,
                "embedder": config.embedder if _embeds(cfg, cell) else None,
            }

            def action() -> dict:
                return {"path": _store_path(stages.build(cfg, sample, data_dir), root)}

            built[sample] = Step("build", sample.name, data_dir, params, action, sample)
            steps.append(built[sample])
        return built[sample]

    def train_step(cell: TrainCell) -> Step:
        if cell not in trained:
            model_dir = root / "train" / cell.name
            data = build_step(cell)
            cfg = config.for_cell(cell)
            model_params = {
                **data.params,
                **cell.describe(),
                "model": config.model,
                "hyper": cfg.training.hyper,
                **_precision_param(cfg.training.hyper.get("precision")),
            }
            if config.training.search is None:
                model = training(cell, data, model_dir, cfg, model_params, cell.name)
            elif (donor := config.search_donor(cell)) is not None:
                model = donor_training(cell, data, model_dir, cfg, model_params, train_step(donor))
            else:
                model = search_step(cell, data, model_dir, cfg, model_params)
            steps.append(model)
            trained[cell] = model
        return trained[cell]

    def training(cell: TrainCell, data: Step, out: Path, cfg: ExperimentConfig, params: dict, name: str):
        return Step(
            "train",
            name,
            out,
            params,
            lambda: {"path": _store_path(stages.train(cfg, cell, result_path(data), out), root)},
            cell,
        )

    def search_step(
        cell: TrainCell, data: Step, model_dir: Path, base: ExperimentConfig, model_params: dict
    ) -> Step:
        """One training step per candidate (under ``train/<cell>/search/``), then a ``select`` step whose
        result is the candidate with the lowest validation loss."""
        candidates = []
        for hyper in config.training.search.candidates():
            name = candidate_name(hyper)
            merged = {**base.training.hyper, **hyper}
            cfg = dataclasses.replace(base, training=dataclasses.replace(base.training, hyper=merged))
            params = {**model_params, "hyper": merged}
            step = training(cell, data, model_dir / "search" / name, cfg, params, f"{cell.name}/{name}")
            steps.append(step)
            candidates.append((hyper, step))

        def action() -> dict:
            paths = [(hyper, result_path(step)) for hyper, step in candidates]
            try:
                best, table = select(paths, stages.validation_loss)
            except ValueError as exc:
                raise ExperimentError(f"model selection for {cell.name}: {exc}") from None
            for row, (_, path) in zip(table, paths, strict=True):
                row["path"] = _store_path(path, root)
            return {"path": table[best]["path"], "selected": candidates[best][0], "candidates": table}

        params = {**model_params, "search": config.training.search.describe()}
        return Step("select", cell.name, model_dir, params, action, cell)

    def donor_training(
        cell: TrainCell, data: Step, model_dir: Path, base: ExperimentConfig, params: dict, chosen: Step
    ) -> Step:
        """One training with the hyper-parameters the donor's ``select`` step chose (read when it runs)."""
        search = config.training.search
        by = {name: f"selected for {chosen.name}" for name in SEARCHED}
        params = {**params, "hyper": {**base.training.hyper, **by}, "search": search.describe()}

        def action() -> dict:
            selected = chosen.read_marker()["result"]["selected"]
            hyper = {**base.training.hyper, **selected}
            cfg = dataclasses.replace(base, training=dataclasses.replace(base.training, hyper=hyper))
            path = _store_path(stages.train(cfg, cell, result_path(data), model_dir), root)
            own = {**selected, "validation_loss": stages.validation_loss(root / path), "path": path}
            return {"path": path, "selected": selected, "selected_by": chosen.name, "candidates": [own]}

        return Step("train", cell.name, model_dir, params, action, cell)

    def eval_step(cell: EvalCell) -> Step:
        model = train_step(cell.train) if cell.train else None
        directory = root / "eval" / cell.model_name / cell.mode.name / cell.benchmark
        source = config.evaluation.files.get(cell.benchmark)
        params = {
            "model": model.params if model else {"model": config.model, **_system_prompt_param(config)},
            **cell.mode.describe(),
            "pool": dict(zip(("size", "seed"), config.pool_sample(cell.train), strict=True))
            if cell.mode.kind == "out-domain"
            else None,
            "embedder": config.embedder if cell.mode.kind != "none" else None,
            "benchmark": cell.benchmark,
            "benchmark_file": str(source.path) if source else None,
            "max_examples": config.evaluation.max_examples,
            "seed": config.evaluation.seed,
            "predict": config.evaluation.predict,
            **_precision_param(config.evaluation.predict.get("precision")),
        }
        if source and source.options():  # only when set: steps finished before these options stay done
            params["benchmark_options"] = source.options()
        if config.evaluation.protocol != "uniner":  # keeps steps finished before protocols existed done
            params["protocol"] = config.evaluation.protocol

        def action() -> dict:
            predictions = stages.predict(config, cell, result_path(model) if model else None, directory)
            return {
                "path": _store_path(predictions, root),
                "metrics": stages.evaluate(config, cell, predictions),
            }

        return Step("eval", cell.name, directory, params, action, cell)

    for cell in config.eval_cells():
        steps.append(eval_step(cell))
    return steps


def run_experiment(
    config: ExperimentConfig, *, stages: Stages | None = None, log: Callable[[str], None] | None = None
) -> dict:
    """Run every unfinished step in order, then write and return the results table (also written when a
    step fails, with the cells done so far). Refuses to start when a step was run (finished or not) with
    other settings than the config's, or when another process runs in the same output directory."""
    check_output_dir(config.output_dir)
    with output_lock(config.output_dir, directory=True, what="experiment directory"):
        return _run_steps(config, stages, log)


def _run_steps(config: ExperimentConfig, stages: Stages | None, log: Callable[[str], None] | None) -> dict:
    steps = plan(config, stages)
    status = {id(step): step.status() for step in steps}
    stale = [s for s in steps if status[id(s)] == "stale"]
    if stale:
        listed = ", ".join(str(s.directory) for s in stale[:5]) + (" ..." if len(stale) > 5 else "")
        raise ExperimentError(
            f"{len(stale)} step(s) were run with other settings than {config.path or 'the config'} now has: "
            f"{listed}; delete those directories to redo them, or use another output_dir"
        )
    todo = [s for s in steps if status[id(s)] == "todo"]
    try:
        for number, step in enumerate(todo, start=1):
            if log:
                log(f"[{number}/{len(todo)}] {step.stage} {step.name}")
            write_json(
                step.started, {"stage": step.stage, "name": step.name, "params": _jsonable(step.params)}
            )
            result = step.action()
            write_json(
                step.marker,
                {"stage": step.stage, "name": step.name, "params": _jsonable(step.params), "result": result},
            )
    finally:
        _answerer.cache_clear()  # let the last model go
        _out_domain_pool.cache_clear()
        results = collect_results(config, steps)
        write_results(config, results)
    return results


def collect_results(
    config: ExperimentConfig,
    steps: list[Step] | None = None,
    choice: tuple[float | dict[str, float], bool] | None = None,
) -> dict:
    """The results table from the finished eval steps' markers: one row per eval cell, with its per-sentence
    counts (``sentences``) where the marker has them; with ``training.search``, ``selection``: per training
    cell the chosen hyper-parameters and every candidate's validation loss, or for a cell outside
    ``search.sizes`` the cell it took them from (``selected_by``). ``choice``: (threshold, multi_label) to
    score every cell's predictions again with its mentions chosen by score (recorded as ``choice``); the
    threshold may be one per model (``{model: threshold}``, e.g. each chosen on held-out data), and a
    finished cell of a model it lacks raises :class:`ExperimentError`."""
    steps = steps if steps is not None else plan(config)
    rows, missing, selection = [], [], {}
    for step in steps:
        if step.stage in ("select", "train") and (marker := step.read_marker()) is not None:
            result = marker["result"]
            if "selected" in result and step.made_with_current_settings(marker):
                keys = ("selected", "candidates", "selected_by")
                selection[step.name] = {k: result[k] for k in keys if k in result}
        if step.stage != "eval":
            continue
        marker = step.read_marker()
        if marker is None or not step.made_with_current_settings(marker):
            missing.append(step.name)
            continue
        metrics = marker["result"]["metrics"]
        if choice is not None:
            threshold, multi_label = choice
            if isinstance(threshold, dict):
                if step.cell.model_name not in threshold:
                    raise ExperimentError(f"no threshold for model {step.cell.model_name} (cell {step.name})")
                threshold = threshold[step.cell.model_name]
            predictions = config.output_dir / marker["result"]["path"]
            metrics = run_evaluate(config, step.cell, predictions, (threshold, multi_label))
        row = {
            **step.cell.describe(),
            **{k: metrics.get(k) for k in ("precision", "recall", "f1", "n_queries", "n_unparseable")},
            **{k: metrics[k] for k in ("n_capped", "n_repetition") if k in metrics},  # absent in older ones
        }
        if "sentences" in metrics:  # absent in markers written before rait kept per-sentence counts
            row["sentences"] = metrics["sentences"]
        rows.append(row)
    rows.sort(key=lambda row: row["model"] != "base")  # the base model's rows first, though it runs last
    return {
        "experiment": config.name,
        "lang": config.lang,
        "base_model": config.model,
        "embedder": config.embedder,
        "benchmarks": list(config.evaluation.benchmarks),
        "max_examples": config.evaluation.max_examples,
        "protocol": config.evaluation.protocol,
        "complete": not missing,
        "missing": missing,
        "rows": rows,
        **({"selection": selection} if selection else {}),
        **({"choice": {"threshold": choice[0], "multi_label": choice[1]}} if choice is not None else {}),
    }


def write_results(config: ExperimentConfig, results: dict) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` under the experiment's output directory (with a ``choice``:
    ``results.<threshold or per-model>-<one-type|multi-label>.json`` and ``.md``)."""
    from rait.report import results_markdown

    json_path, md_path = config.output_dir / RESULTS_JSON, config.output_dir / RESULTS_MD
    if "choice" in results:
        choice = results["choice"]
        threshold = choice["threshold"]
        tag = "per-model" if isinstance(threshold, dict) else f"{threshold:g}"
        tag += f"-{'multi-label' if choice['multi_label'] else 'one-type'}"
        json_path, md_path = json_path.with_suffix(f".{tag}.json"), md_path.with_suffix(f".{tag}.md")
    write_json(json_path, results)
    with atomic_write(md_path) as handle:
        handle.write(results_markdown(results))
    return json_path, md_path
