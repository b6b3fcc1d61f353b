"""Experiments: a YAML grid of training and evaluation cells, run with resume into one results table.

A *training cell* is (size, method, strategy, k, seed); an *eval cell* is (training cell or the base model,
inference mode, benchmark). Every step (build a dataset, train a model, predict + score one eval cell) writes
into its own directory and finishes with a ``DONE.json`` marker written atomically last; a re-run skips
steps whose marker exists, so a half-done experiment only does what is missing, and a dataset or model is
made once for all the cells that use it. The stage calls sit in one adapter layer (:class:`Stages`), so the
runner can be driven by fakes."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from rait.build_data import METHODS
from rait.errors import DataError, RaitError
from rait.fileio import atomic_write, read_json, write_json
from rait.retrieval import DEFAULT_BM25_THRESHOLD, DEFAULT_K, STRATEGIES

MODE_KINDS = ("none", "out-domain", "in-domain")
LANGS = ("en", "zh")
DONE_NAME = "DONE.json"
STARTED_NAME = "STARTED.json"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


class ExperimentError(RaitError):
    """An experiment cannot run as configured (e.g. finished outputs made with other settings)."""


# --------------------------------------------------------------------------------------------- cells


@dataclass(frozen=True, slots=True)
class TrainCell:
    """One fine-tuned model: training-set size, method, retrieval strategy and k (RA-IT only), seed."""

    size: int
    method: str
    strategy: str | None = None
    k: int = 0
    seed: int = 42

    @property
    def name(self) -> str:
        if self.method == "vanilla":
            return f"n{self.size}-vanilla-s{self.seed}"
        return f"n{self.size}-ra-it-{self.strategy}-k{self.k}-s{self.seed}"

    def describe(self) -> dict:
        return {
            "size": self.size,
            "method": self.method,
            "strategy": self.strategy,
            "k": self.k,
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class InferenceMode:
    """How examples are given at inference: none, out-domain (from the training pool) or in-domain
    (nearest from ``pool_size`` labelled examples of the benchmark's train split)."""

    kind: str
    strategy: str | None = None
    k: int = 0
    pool_size: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind == "out-domain":
            return f"out-{self.strategy}-k{self.k}"
        return f"in{self.pool_size}-{self.strategy}-k{self.k}"

    def describe(self) -> dict:
        return {
            "mode": self.kind,
            "inference_strategy": self.strategy,
            "inference_k": self.k or None,
            "pool_size": self.pool_size,
        }


@dataclass(frozen=True, slots=True)
class EvalCell:
    """One benchmark scored for one model (a training cell, or ``None`` = the base model) and one mode."""

    train: TrainCell | None
    mode: InferenceMode
    benchmark: str

    @property
    def model_name(self) -> str:
        return self.train.name if self.train else "base"

    @property
    def name(self) -> str:
        return f"{self.model_name}/{self.mode.name}/{self.benchmark}"

    def describe(self) -> dict:
        if self.train is None:
            model = {"size": None, "method": "base", "strategy": None, "k": None, "seed": None}
        else:
            model = self.train.describe()
            if self.train.method == "vanilla":
                model["k"] = None
        return {"model": self.model_name, **model, **self.mode.describe(), "benchmark": self.benchmark}


@dataclass(frozen=True, slots=True)
class Grid:
    """A product of training-cell factors; vanilla cells ignore ``strategies`` and ``k``."""

    sizes: tuple[int, ...]
    methods: tuple[str, ...]
    strategies: tuple[str, ...]
    k: tuple[int, ...]

    def cells(self, seeds: Sequence[int]) -> list[TrainCell]:
        cells = []
        for size in self.sizes:
            for method in self.methods:
                for seed in seeds:
                    if method == "vanilla":
                        cells.append(TrainCell(size, method, seed=seed))
                    else:
                        cells += [
                            TrainCell(size, method, s, k, seed) for s in self.strategies for k in self.k
                        ]
        return cells


@dataclass(frozen=True, slots=True)
class ModelSelector:
    """Which models an inference mode is applied to; ``None`` = no restriction on that factor.
    ``strategies`` and ``k`` restrict RA-IT models only."""

    base: bool = True
    sizes: tuple[int, ...] | None = None
    methods: tuple[str, ...] | None = None
    strategies: tuple[str, ...] | None = None
    k: tuple[int, ...] | None = None

    def matches(self, cell: TrainCell | None) -> bool:
        if cell is None:
            return self.base
        if self.sizes is not None and cell.size not in self.sizes:
            return False
        if self.methods is not None and cell.method not in self.methods:
            return False
        if cell.method == "ra-it":
            if self.strategies is not None and cell.strategy not in self.strategies:
                return False
            if self.k is not None and cell.k not in self.k:
                return False
        return True


@dataclass(frozen=True, slots=True)
class ModeSpec:
    """One entry of ``evaluation.modes``: a kind, its factor lists and the models it applies to."""

    kind: str
    strategies: tuple[str, ...] = ()
    k: tuple[int, ...] = ()
    pool_sizes: tuple[int, ...] = ()
    models: ModelSelector = ModelSelector()

    def modes(self) -> list[InferenceMode]:
        if self.kind == "none":
            return [InferenceMode("none")]
        if self.kind == "out-domain":
            return [InferenceMode("out-domain", s, k) for s in self.strategies for k in self.k]
        return [
            InferenceMode("in-domain", s, k, n)
            for n in self.pool_sizes
            for s in self.strategies
            for k in self.k
        ]


# -------------------------------------------------------------------------------------------- config


@dataclass(slots=True)
class TrainingSpec:
    source: str
    grids: list[Grid]
    seeds: tuple[int, ...]
    format: str | None = None
    build: dict = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)


@dataclass(slots=True)
class EvaluationSpec:
    benchmarks: tuple[str, ...]
    modes: list[ModeSpec]
    base: bool = True
    max_examples: int = 2000
    seed: int = 42
    predict: dict = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # benchmarks given as records files, by name


@dataclass(slots=True)
class ExperimentConfig:
    """A validated experiment; build it with :func:`load_config`."""

    name: str
    lang: str
    model: str
    embedder: str | None
    output_dir: Path
    training: TrainingSpec
    evaluation: EvaluationSpec
    path: Path | None = None

    def train_cells(self) -> list[TrainCell]:
        """Every grid's cells, each once, in first-seen order."""
        return list(dict.fromkeys(c for g in self.training.grids for c in g.cells(self.training.seeds)))

    def eval_cells(self) -> list[EvalCell]:
        """Eval cells grouped by model (base first), then mode, then benchmark."""
        models: list[TrainCell | None] = [None, *self.train_cells()]
        cells = []
        for model in models:
            for spec in self.evaluation.modes:
                if not spec.models.matches(model):
                    continue
                for mode in spec.modes():
                    cells += [EvalCell(model, mode, b) for b in self.evaluation.benchmarks]
        return list(dict.fromkeys(cells))

    def pool_sample(self, cell: TrainCell | None) -> tuple[int, int]:
        """(size, seed) of the out-domain example pool: the training source sampled as the model's training
        data was (same passages); for the base model the largest size and the first seed."""
        if cell is None:
            return max(s for g in self.training.grids for s in g.sizes), self.training.seeds[0]
        return cell.size, cell.seed


_TOP_KEYS = ("name", "lang", "model", "embedder", "output_dir", "training", "evaluation")
_TRAINING_KEYS = (
    "source",
    "format",
    "sizes",
    "methods",
    "strategies",
    "k",
    "seeds",
    "extra_grids",
    "build",
    "hyper",
)
_GRID_KEYS = ("sizes", "methods", "strategies", "k")
_EVALUATION_KEYS = ("benchmarks", "modes", "base", "max_examples", "seed", "predict")
_MODE_KEYS = ("kind", "strategies", "k", "pool_sizes", "models")
_SELECTOR_KEYS = ("base", "sizes", "methods", "strategies", "k")
_SET_BY_RUNNER = {
    "source",
    "output",
    "method",
    "k",
    "strategy",
    "size",
    "lang",
    "embedder",
    "seed",
    "source_format",
    "show_progress",
    "data",
    "output_dir",
    "model",
    "resume",
}
PREDICT_DEFAULTS = {
    "max_new_tokens": 64,
    "batch_size": 32,
    "backend": "hf",
    "bm25_threshold": DEFAULT_BM25_THRESHOLD,
    "K": DEFAULT_K,
    "mixed_ratio": 0.5,
    "chunk_size": 32,
}


def _key_lines(text: str) -> dict[str, int]:
    """1-based line of every key and list item, named like ``training.sizes`` or ``evaluation.modes[1]``."""
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{prefix}.{key.value}" if prefix else str(key.value)
                lines[name] = key.start_mark.line + 1
                walk(value, name)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                name = f"{prefix}[{index}]"
                lines[name] = item.start_mark.line + 1
                walk(item, name)

    try:
        walk(yaml.compose(text), "")
    except yaml.YAMLError:
        pass
    return lines


class _Reader:
    """Type-checks YAML values, raising DataError with the file, the line and the dotted key."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = _key_lines(text)

    def error(self, key: str, message: str) -> DataError:
        probe = key
        while probe and probe not in self.lines:
            probe = probe[: max(probe.rfind("."), probe.rfind("["), 0)]
        return DataError(self.path, message, line=self.lines.get(probe), field=key or None)

    def mapping(self, value, key: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.error(key, f"must be a mapping, got {_kind(value)}")
        for name in value:
            if name not in allowed:
                raise self.error(_join(key, name), f"unknown key; allowed keys: {', '.join(allowed)}")
        for name in required:
            if name not in value:
                raise self.error(key, f"missing required key '{name}'")
        return value

    def string(self, value, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {_kind(value)}")
        return value

    def choice(self, value, key: str, choices: Sequence[str]) -> str:
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def integer(self, value, key: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {_kind(value)}")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def boolean(self, value, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_kind(value)}")
        return value

    def items(self, value, key: str) -> list:
        """A non-empty list; a scalar is read as a list of one."""
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(key, "must not be empty")
        return items

    def integers(self, value, key: str, minimum: int = 0) -> tuple[int, ...]:
        items = self.items(value, key)
        out = tuple(
            self.integer(v, f"{key}[{i}]" if isinstance(value, list) else key, minimum)
            for i, v in enumerate(items)
        )
        return tuple(dict.fromkeys(out))

    def choices(self, value, key: str, choices: Sequence[str]) -> tuple[str, ...]:
        items = self.items(value, key)
        out = tuple(
            self.choice(v, f"{key}[{i}]" if isinstance(value, list) else key, choices)
            for i, v in enumerate(items)
        )
        return tuple(dict.fromkeys(out))

    def options(self, value, key: str, allowed: set[str]) -> dict:
        """Stage options, checked against the stage's accepted names."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"must be a mapping, got {_kind(value)}")
        for name in value:
            if name not in allowed:
                raise self.error(_join(key, name), f"unknown option; accepted: {', '.join(sorted(allowed))}")
        return dict(value)


def _join(prefix: str, name) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _kind(value) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def load_config(path: str | Path, *, output_dir: str | Path | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML; errors name the file, line and key. ``output_dir``
    overrides the config's (default ``runs/<name>``); relative paths are relative to the current directory."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(
            path, f"invalid YAML: {getattr(exc, 'problem', exc)}", line=mark.line + 1 if mark else None
        ) from None
    r = _Reader(path, text)
    data = r.mapping(data, "", _TOP_KEYS, required=("model", "training", "evaluation"))
    name = r.string(data.get("name", path.stem), "name")
    lang = r.choice(data.get("lang", "en"), "lang", LANGS)
    model = r.string(data["model"], "model")
    embedder = r.string(data["embedder"], "embedder") if data.get("embedder") is not None else None
    out = (
        Path(output_dir)
        if output_dir is not None
        else Path(r.string(data.get("output_dir", f"runs/{name}"), "output_dir"))
    )
    training = _training(r, data["training"])
    evaluation = _evaluation(r, data["evaluation"], lang, training)
    return ExperimentConfig(name, lang, model, embedder, out, training, evaluation, path=path)


def _grid(r: _Reader, data: dict, key: str, defaults: Grid) -> Grid:
    """A grid from ``data``; factors it does not name come from ``defaults``."""
    return Grid(
        sizes=r.integers(data["sizes"], f"{key}.sizes", 1) if "sizes" in data else defaults.sizes,
        methods=r.choices(data["methods"], f"{key}.methods", METHODS)
        if "methods" in data
        else defaults.methods,
        strategies=r.choices(data["strategies"], f"{key}.strategies", STRATEGIES)
        if "strategies" in data
        else defaults.strategies,
        k=r.integers(data["k"], f"{key}.k", 1) if "k" in data else defaults.k,
    )


def _training(r: _Reader, data) -> TrainingSpec:
    data = r.mapping(data, "training", _TRAINING_KEYS, required=("source", "sizes"))
    main = _grid(r, data, "training", Grid((), METHODS, ("nn",), (2,)))
    grids = [main]
    extra = data.get("extra_grids")
    for i, grid in enumerate(r.items(extra, "training.extra_grids") if extra is not None else []):
        key = f"training.extra_grids[{i}]"
        grids.append(_grid(r, r.mapping(grid, key, _GRID_KEYS), key, main))
    fmt = data.get("format")
    return TrainingSpec(
        source=r.string(data["source"], "training.source"),
        grids=grids,
        seeds=r.integers(data.get("seeds", [42]), "training.seeds"),
        format=r.string(fmt, "training.format") if fmt is not None else None,
        build=_build_options(r, data.get("build")),
        hyper=_train_options(r, data.get("hyper")),
    )


def _build_options(r: _Reader, value) -> dict:
    from rait.build_data import BuildConfig

    options = r.options(
        value, "training.build", {f.name for f in dataclasses.fields(BuildConfig)} - _SET_BY_RUNNER
    )
    try:
        BuildConfig(source="-", output="-", **options).validate()
    except RaitError as exc:
        raise r.error("training.build", str(exc)) from None
    return options


def _train_options(r: _Reader, value) -> dict:
    if not value:
        return r.options(value, "training.hyper", set())
    from rait.train import TrainConfig

    options = r.options(
        value, "training.hyper", {f.name for f in dataclasses.fields(TrainConfig)} - _SET_BY_RUNNER
    )
    try:
        TrainConfig.from_dict(options, source=r.path)
    except DataError as exc:
        raise r.error(_join("training.hyper", exc.field or ""), exc.reason) from None
    return options


def _predict_options(r: _Reader, value) -> dict:
    options = r.options(value, "evaluation.predict", set(PREDICT_DEFAULTS))
    for name, given in options.items():
        default = PREDICT_DEFAULTS[name]
        ok = (
            isinstance(given, str)
            if isinstance(default, str)
            else (
                isinstance(given, int | float)
                and not isinstance(given, bool)
                and (isinstance(given, int) or isinstance(default, float))
            )
        )
        if not ok:
            raise r.error(
                f"evaluation.predict.{name}", f"must be a {type(default).__name__}, got {_kind(given)}"
            )
    return options


def _evaluation(r: _Reader, data, lang: str, training: TrainingSpec) -> EvaluationSpec:
    data = r.mapping(data, "evaluation", _EVALUATION_KEYS, required=("benchmarks",))
    benchmarks, files = _benchmarks(r, data["benchmarks"], lang)
    base = r.boolean(data.get("base", True), "evaluation.base")
    raw_modes = data.get("modes", ["none"])
    modes = [
        _mode(r, m, f"evaluation.modes[{i}]", base)
        for i, m in enumerate(r.items(raw_modes, "evaluation.modes"))
    ]
    for i, spec in enumerate(modes):
        if spec.kind == "in-domain" and files:
            raise r.error(
                f"evaluation.modes[{i}]",
                "in-domain examples come from a registered benchmark's train "
                f"split; {', '.join(files)} is a file",
            )
    return EvaluationSpec(
        benchmarks=benchmarks,
        modes=modes,
        base=base,
        max_examples=r.integer(data.get("max_examples", 2000), "evaluation.max_examples", 1),
        seed=r.integer(data.get("seed", 42), "evaluation.seed"),
        predict=_predict_options(r, data.get("predict")),
        files=files,
    )


def _benchmarks(r: _Reader, value, lang: str) -> tuple[tuple[str, ...], dict[str, Path]]:
    """Registered benchmark names, or paths of records files (named by their stem)."""
    from rait.benchmarks import BENCHMARKS

    names: list[str] = []
    files: dict[str, Path] = {}
    for i, entry in enumerate(r.items(value, "evaluation.benchmarks")):
        key = f"evaluation.benchmarks[{i}]" if isinstance(value, list) else "evaluation.benchmarks"
        entry = r.string(entry, key)
        if entry in BENCHMARKS:
            if BENCHMARKS[entry].lang != lang:
                raise r.error(
                    key, f"benchmark {entry!r} is {BENCHMARKS[entry].lang}, the experiment's lang is {lang}"
                )
            name = entry
        elif "/" in entry or Path(entry).suffix:
            path = Path(entry)
            if not path.is_file():
                raise r.error(
                    key, f"benchmark file {entry} does not exist (relative paths are from {Path.cwd()})"
                )
            name = path.stem
            if name in BENCHMARKS or name in files:
                raise r.error(key, f"benchmark file name {name!r} is already taken; rename the file")
            files[name] = path
        else:
            raise r.error(
                key,
                f"unknown benchmark {entry!r}; must be one of {', '.join(BENCHMARKS)}, "
                "or the path of a records file",
            )
        if name in names:
            raise r.error(key, f"benchmark {name!r} is listed twice")
        names.append(name)
    return tuple(names), files


def _mode(r: _Reader, data, key: str, base: bool) -> ModeSpec:
    if isinstance(data, str):
        data = {"kind": data}
    data = r.mapping(data, key, _MODE_KEYS, required=("kind",))
    kind = r.choice(data["kind"], f"{key}.kind", MODE_KINDS)
    if kind == "none":
        for name in ("strategies", "k", "pool_sizes"):
            if name in data:
                raise r.error(_join(key, name), "only for out-domain / in-domain modes")
    elif kind == "out-domain" and "pool_sizes" in data:
        raise r.error(f"{key}.pool_sizes", "only for in-domain modes")
    elif kind == "in-domain" and "pool_sizes" not in data:
        raise r.error(key, "missing required key 'pool_sizes'")
    selector = ModelSelector(base=base)
    if "models" in data:
        sel = r.mapping(data["models"], f"{key}.models", _SELECTOR_KEYS)
        k = f"{key}.models"
        selector = ModelSelector(
            base=r.boolean(sel.get("base", base), f"{k}.base"),
            sizes=r.integers(sel["sizes"], f"{k}.sizes", 1) if "sizes" in sel else None,
            methods=r.choices(sel["methods"], f"{k}.methods", METHODS) if "methods" in sel else None,
            strategies=r.choices(sel["strategies"], f"{k}.strategies", STRATEGIES)
            if "strategies" in sel
            else None,
            k=r.integers(sel["k"], f"{k}.k", 1) if "k" in sel else None,
        )
    if kind == "none":
        return ModeSpec(kind, models=selector)
    return ModeSpec(
        kind,
        strategies=r.choices(data.get("strategies", ["nn"]), f"{key}.strategies", STRATEGIES),
        k=r.integers(data.get("k", [2]), f"{key}.k", 1),
        pool_sizes=r.integers(data["pool_sizes"], f"{key}.pool_sizes", 1) if kind == "in-domain" else (),
        models=selector,
    )


# ------------------------------------------------------------------------------------------- runner


@dataclass(frozen=True, slots=True)
class Stages:
    """The stage calls the runner makes; each writes only under the directory it is given.

    ``build(config, cell, out_dir) -> data file``; ``train(config, cell, data, out_dir) -> model dir``;
    ``predict(config, cell, model, out_dir) -> predictions file`` (``model`` None = the base model);
    ``evaluate(config, cell, predictions) -> metrics`` (precision, recall, f1, n_queries, n_unparseable)."""

    build: Callable[[ExperimentConfig, TrainCell, Path], Path]
    train: Callable[[ExperimentConfig, TrainCell, Path, Path], Path]
    predict: Callable[[ExperimentConfig, EvalCell, Path | None, Path], Path]
    evaluate: Callable[[ExperimentConfig, EvalCell, Path], dict]


@dataclass(slots=True)
class Step:
    """One unit of work in its own directory, finished by a done-marker holding ``params`` and the result."""

    stage: str  # "build", "train" or "eval"
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


# Settings that change how a step runs (memory, speed, checkpoints, logs) but not what it computes: editing
# them, e.g. a smaller micro-batch after running out of memory, leaves finished steps done. The Trainer
# normalises the loss over the whole batch's answer tokens, so the micro-batch size does not change the
# objective; results differ only by float rounding and dropout draws.
EXECUTION_SETTINGS = {
    "hyper": (
        "per_device_batch_size",
        "gradient_checkpointing",
        "save_steps",
        "save_total_limit",
        "logging_steps",
    ),
    "predict": ("batch_size", "chunk_size"),
}


def _result_settings(params):
    """``params`` without :data:`EXECUTION_SETTINGS`, at any depth (eval steps nest their model's)."""
    if not isinstance(params, dict):
        return params
    return {
        key: {k: v for k, v in value.items() if k not in EXECUTION_SETTINGS[key]}
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
    """Every step, dependencies first: per model (base first) its dataset, its training, its eval cells.
    A dataset and a model are one step each, whatever number of cells use them."""
    stages = stages or default_stages()
    root = config.output_dir
    steps: list[Step] = []
    trained: dict[TrainCell, Step] = {}

    def result_path(step: Step) -> Path:
        marker = step.read_marker()
        if marker is None:
            raise ExperimentError(f"{step.stage} step {step.name} has not finished ({step.marker} missing)")
        return root / marker["result"]["path"]

    def train_step(cell: TrainCell) -> Step:
        if cell not in trained:
            data_dir, model_dir = root / "data" / cell.name, root / "train" / cell.name
            data_params = {
                "lang": config.lang,
                "source": config.training.source,
                "format": config.training.format,
                **cell.describe(),
                "build": config.training.build,
                "embedder": config.embedder if cell.method == "ra-it" else None,
            }
            data = Step(
                "build",
                cell.name,
                data_dir,
                data_params,
                lambda: {"path": _store_path(stages.build(config, cell, data_dir), root)},
                cell,
            )
            model = Step(
                "train",
                cell.name,
                model_dir,
                {**data_params, "model": config.model, "hyper": config.training.hyper},
                lambda: {"path": _store_path(stages.train(config, cell, result_path(data), model_dir), root)},
                cell,
            )
            steps.extend([data, model])
            trained[cell] = model
        return trained[cell]

    def eval_step(cell: EvalCell) -> Step:
        model = train_step(cell.train) if cell.train else None
        directory = root / "eval" / cell.model_name / cell.mode.name / cell.benchmark
        params = {
            "model": model.params if model else {"model": config.model},
            **cell.mode.describe(),
            "pool": dict(zip(("size", "seed"), config.pool_sample(cell.train), strict=True))
            if cell.mode.kind == "out-domain"
            else None,
            "embedder": config.embedder if cell.mode.kind != "none" else None,
            "benchmark": cell.benchmark,
            "benchmark_file": str(config.evaluation.files.get(cell.benchmark, "")) or None,
            "max_examples": config.evaluation.max_examples,
            "seed": config.evaluation.seed,
            "predict": config.evaluation.predict,
        }

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
    other settings than the config's."""
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


def collect_results(config: ExperimentConfig, steps: list[Step] | None = None) -> dict:
    """The results table from the finished eval steps' markers: one row per eval cell."""
    steps = steps if steps is not None else plan(config)
    rows, missing = [], []
    for step in steps:
        if step.stage != "eval":
            continue
        marker = step.read_marker()
        if marker is None or not step.made_with_current_settings(marker):
            missing.append(step.name)
            continue
        metrics = marker["result"]["metrics"]
        rows.append(
            {
                **step.cell.describe(),
                **{k: metrics.get(k) for k in ("precision", "recall", "f1", "n_queries", "n_unparseable")},
            }
        )
    return {
        "experiment": config.name,
        "lang": config.lang,
        "base_model": config.model,
        "embedder": config.embedder,
        "benchmarks": list(config.evaluation.benchmarks),
        "max_examples": config.evaluation.max_examples,
        "complete": not missing,
        "missing": missing,
        "rows": rows,
    }


def write_results(config: ExperimentConfig, results: dict) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` under the experiment's output directory."""
    from rait.report import results_markdown

    json_path = config.output_dir / RESULTS_JSON
    md_path = config.output_dir / RESULTS_MD
    write_json(json_path, results)
    with atomic_write(md_path) as handle:
        handle.write(results_markdown(results))
    return json_path, md_path


# ------------------------------------------------------------------------ adapters to the real stages


def run_build(config: ExperimentConfig, cell: TrainCell, out_dir: Path) -> Path:
    """:func:`rait.build_data.build_data` for one training cell: ``train.jsonl`` + its manifest."""
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


def run_train(config: ExperimentConfig, cell: TrainCell, data: Path, out_dir: Path) -> Path:
    """:func:`rait.train.train` (LoRA) on one cell's data; resumes from the cell's last checkpoint."""
    from rait.train import TrainConfig, train

    options = {
        **config.training.hyper,
        "data": [str(data)],
        "output_dir": str(out_dir),
        "model": config.model,
        "seed": cell.seed,
        "resume": True,
    }
    return train(TrainConfig.from_dict(options, source=config.path or "experiment"))


@lru_cache(maxsize=1)
def _answerer(model: str, adapter: str | None, backend: str, lang: str, max_new_tokens: int, batch_size: int):
    """The last model loaded, kept for the next eval cells (they come grouped by model)."""
    from rait.predict import load_predictor

    return load_predictor(
        model,
        adapter=adapter,
        backend=backend,
        lang=lang,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )


@lru_cache(maxsize=2)
def _out_domain_pool(source: str, fmt: str | None, lang: str, embedder: str | None, size: int, seed: int):
    from rait.embed import get_embedder
    from rait.retrieval import ExamplePool

    return ExamplePool.from_source(source, get_embedder(embedder, lang), lang, fmt=fmt, size=size, seed=seed)


def _benchmark_records(config: ExperimentConfig, name: str) -> list:
    from rait.benchmarks import load_benchmark
    from rait.predict import read_input

    ev = config.evaluation
    if name not in ev.files:
        return load_benchmark(name, "test", max_examples=ev.max_examples, seed=ev.seed)
    records = read_input(ev.files[name])
    if len(records) > ev.max_examples:
        import random

        keep = sorted(random.Random(ev.seed).sample(range(len(records)), ev.max_examples))
        records = [records[i] for i in keep]
    for record in records:
        record.source = name
    return records


def run_predict(config: ExperimentConfig, cell: EvalCell, model: Path | None, out_dir: Path) -> Path:
    """Answer every (passage, type) query of the cell's benchmark into ``predictions.jsonl`` (resumable),
    with the mode's retrieved examples; ``model`` is the trained adapter, None for the base model.
    What this run did (passages resumed, predicted, given examples) goes to ``predict_stats.json``."""
    from rait.embed import get_embedder
    from rait.predict import predict_records
    from rait.retrieval import ExamplePool

    options = {**PREDICT_DEFAULTS, **config.evaluation.predict}
    records = _benchmark_records(config, cell.benchmark)
    answerer = _answerer(
        config.model,
        str(model) if model else None,
        options["backend"],
        config.lang,
        options["max_new_tokens"],
        options["batch_size"],
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

        def examples(batch: list) -> list:
            return pool.retrieve(
                [r.text for r in batch],
                mode.k,
                mode.strategy,
                K=options["K"],
                bm25_threshold=options["bm25_threshold"],
                mixed_ratio=options["mixed_ratio"],
                seed=config.evaluation.seed,
                query_ids=[r.id for r in batch],
            )

    output = out_dir / "predictions.jsonl"
    stats = predict_records(
        records, answerer, output, examples=examples, lang=config.lang, chunk_size=options["chunk_size"]
    )
    write_json(out_dir / "predict_stats.json", stats.to_dict())
    return output


def run_evaluate(config: ExperimentConfig, cell: EvalCell, predictions: Path) -> dict:
    """UniversalNER micro scores of one cell's predictions (:func:`rait.evaluation.evaluate_file`)."""
    from rait.evaluation import evaluate_file

    scores = evaluate_file(predictions).to_dict()["benchmarks"]
    if cell.benchmark not in scores:
        raise ExperimentError(f"{predictions} has no predictions for {cell.benchmark}")
    return scores[cell.benchmark]


def default_stages() -> Stages:
    """The real stages: build_data, train, predict, evaluation."""
    return Stages(run_build, run_train, run_predict, run_evaluate)
