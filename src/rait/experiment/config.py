"""Reading and validating an experiment YAML into an :class:`ExperimentConfig`; errors name the file,
line and key."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rait.answers import PROTOCOLS
from rait.build_data import METHODS
from rait.data.benchmarks import DEFAULT_MAX_EXAMPLES
from rait.data.file_benchmarks import FileSource, benchmark_name
from rait.errors import DataError, RaitError
from rait.experiment.cells import EvalCell, Grid, ModelSelector, ModeSpec, TrainCell
from rait.experiment.selection import SEARCH_KEYS, SEARCHED, SearchSpec
from rait.experiment.yaml_reader import Reader, join_key, kind_of
from rait.fileio import read_text
from rait.inference import DECODINGS, DEFAULT_MAX_NEW_TOKENS
from rait.precision import DEFAULT_PRECISION, PRECISIONS
from rait.records import DEFAULT_SEED
from rait.retrieval import DEFAULT_BM25_THRESHOLD, DEFAULT_K, DEFAULT_MIXED_RATIO, EXAMPLE_MODES, STRATEGIES

LANGS = ("en", "zh")


class ExperimentError(RaitError):
    """An experiment cannot run as configured (e.g. finished outputs made with other settings)."""


@dataclass(frozen=True, slots=True)
class Recipe:
    """A named training recipe (``training.recipes``): build and training options laid over the
    experiment's ``training.build`` and ``training.hyper`` for the cells of the grids that name it."""

    build: dict = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)


@dataclass(slots=True)
class TrainingSpec:
    source: str
    grids: list[Grid]
    seeds: tuple[int, ...]
    format: str | None = None
    build: dict = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)
    search: SearchSpec | None = None  # learning rate x epochs, chosen by validation loss
    recipes: dict[str, Recipe] = field(default_factory=dict)


@dataclass(slots=True)
class EvaluationSpec:
    benchmarks: tuple[str, ...]
    modes: list[ModeSpec]
    base: bool = True
    max_examples: int = DEFAULT_MAX_EXAMPLES
    seed: int = DEFAULT_SEED
    predict: dict = field(default_factory=dict)
    protocol: str = "uniner"  # rait.answers.PROTOCOLS: where an answer's list is looked for
    files: dict[str, FileSource] = field(default_factory=dict)  # benchmarks given as data files, by name


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
    adapters: Path | None = None  # the committed adapter store (rait.experiment.adapters)

    def for_cell(self, cell: TrainCell | None) -> ExperimentConfig:
        """This config as ``cell`` is built and trained: its recipe's options over ``training.build`` and
        ``training.hyper`` (the config itself for a cell without a recipe)."""
        if cell is None or not cell.recipe:
            return self
        recipe = self.training.recipes[cell.recipe]
        training = dataclasses.replace(
            self.training,
            build={**self.training.build, **recipe.build},
            hyper={**self.training.hyper, **recipe.hyper},
        )
        return dataclasses.replace(self, training=training)

    def train_cells(self) -> list[TrainCell]:
        """Every grid's cells, each once, in first-seen order."""
        return list(dict.fromkeys(c for g in self.training.grids for c in g.cells(self.training.seeds)))

    def search_donor(self, cell: TrainCell) -> TrainCell | None:
        """The searched cell whose chosen hyper-parameters ``cell`` is trained with
        (``training.search.sizes``); None when there is no search or ``cell`` is searched itself."""
        return self.training.search.donor(cell) if self.training.search else None

    def eval_cells(self) -> list[EvalCell]:
        """Eval cells grouped by model (the base model last: trained models are what a study is about, and a
        long run answers its question sooner), then mode, then benchmark."""
        models: list[TrainCell | None] = [*self.train_cells(), None]
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


_TOP_KEYS = ("name", "lang", "model", "embedder", "output_dir", "adapters", "training", "evaluation")
_TRAINING_KEYS = (
    "source",
    "format",
    "sizes",
    "methods",
    "strategies",
    "k",
    "seeds",
    "train_seeds",
    "extra_grids",
    "build",
    "hyper",
    "search",
    "recipes",
)
_GRID_KEYS = ("sizes", "methods", "strategies", "k", "train_seeds", "seeds", "recipes")
_RECIPE_KEYS = ("build", "hyper")
_EVALUATION_KEYS = ("benchmarks", "modes", "base", "max_examples", "seed", "predict", "protocol")
_MODE_KEYS = ("kind", "strategies", "k", "pool_sizes", "models", "decodings")
_SELECTOR_KEYS = ("base", "sizes", "methods", "strategies", "k", "seeds", "recipes")
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
    "split_seed",
    "source_format",
    "show_progress",
    "data",
    "output_dir",
    "model",
    "resume",
}
PREDICT_DEFAULTS = {
    "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
    "stop_repetition": True,
    "batch_size": 32,
    "backend": "hf",
    "bm25_threshold": DEFAULT_BM25_THRESHOLD,
    "K": DEFAULT_K,
    "mixed_ratio": DEFAULT_MIXED_RATIO,
    "chunk_size": 32,
    "precision": DEFAULT_PRECISION,
    "allow_identical_examples": False,
    # the paper's protocol: every mention kept (rait.inference.confidence; the files keep the scores)
    "threshold": 0.0,
    "multi_label": True,
}


def load_config(path: str | Path, *, output_dir: str | Path | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML; errors name the file, line and key. ``output_dir``
    overrides the config's (default ``runs/<name>``); relative paths are relative to the current directory."""
    path = Path(path)
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(
            path, f"invalid YAML: {getattr(exc, 'problem', exc)}", line=mark.line + 1 if mark else None
        ) from None
    r = Reader(path, text)
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
    adapters = Path(r.string(data["adapters"], "adapters")) if data.get("adapters") is not None else None
    return ExperimentConfig(
        name, lang, model, embedder, out, training, evaluation, path=path, adapters=adapters
    )


def _grid(r: Reader, data: dict, key: str, defaults: Grid, recipes: dict | None = None) -> Grid:
    """A grid from ``data``; factors it does not name come from ``defaults``; ``recipes``: the names it may
    use (None: the main grid, which has none)."""
    names = defaults.recipes
    if "recipes" in data:
        if recipes is None:
            raise r.error(f"{key}.recipes", "only extra_grids name recipes; training.recipes defines them")
        names = r.choices(data["recipes"], f"{key}.recipes", tuple(recipes))
    return Grid(
        sizes=r.integers(data["sizes"], f"{key}.sizes", 1) if "sizes" in data else defaults.sizes,
        methods=r.choices(data["methods"], f"{key}.methods", METHODS)
        if "methods" in data
        else defaults.methods,
        strategies=r.choices(data["strategies"], f"{key}.strategies", STRATEGIES)
        if "strategies" in data
        else defaults.strategies,
        k=r.integers(data["k"], f"{key}.k", 1) if "k" in data else defaults.k,
        train_seeds=r.integers(data["train_seeds"], f"{key}.train_seeds")
        if "train_seeds" in data
        else defaults.train_seeds,
        seeds=r.integers(data["seeds"], f"{key}.seeds") if "seeds" in data and key != "training" else None,
        recipes=names,
    )


def _recipes(r: Reader, value) -> dict[str, Recipe]:
    """``training.recipes``: name -> ``{build, hyper}``, each checked as ``training.build`` / ``hyper``."""
    if value is None:
        return {}
    recipes = {}
    for name, spec in r.mapping(
        value, "training.recipes", tuple(value) if isinstance(value, dict) else ()
    ).items():
        key = f"training.recipes.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.]*", name) or name == "none":
            raise r.error(
                key,
                "a recipe name is lower-case letters, digits, '_' and '.' (it ends cell names), not 'none'",
            )
        spec = r.mapping(spec, key, _RECIPE_KEYS)
        recipes[name] = Recipe(
            build=_build_options(r, spec.get("build"), f"{key}.build"),
            hyper=_train_options(r, spec.get("hyper"), f"{key}.hyper"),
        )
    return recipes


def _training(r: Reader, data) -> TrainingSpec:
    data = r.mapping(data, "training", _TRAINING_KEYS, required=("source", "sizes"))
    recipes = _recipes(r, data.get("recipes"))
    main = _grid(
        r, {k: v for k, v in data.items() if k != "recipes"}, "training", Grid((), METHODS, ("nn",), (2,))
    )
    grids = [main]
    extra = data.get("extra_grids")
    for i, grid in enumerate(r.items(extra, "training.extra_grids") if extra is not None else []):
        key = f"training.extra_grids[{i}]"
        grids.append(_grid(r, r.mapping(grid, key, _GRID_KEYS), key, main, recipes))
    fmt = data.get("format")
    hyper = _train_options(r, data.get("hyper"))
    spec = TrainingSpec(
        source=r.string(data["source"], "training.source"),
        grids=grids,
        seeds=r.integers(data.get("seeds", [DEFAULT_SEED]), "training.seeds"),
        format=r.string(fmt, "training.format") if fmt is not None else None,
        build=_build_options(r, data.get("build")),
        hyper=hyper,
        search=_search(r, data["search"], hyper, {s for g in grids for s in g.sizes})
        if data.get("search") is not None
        else None,
        recipes=recipes,
    )
    _check_donors(r, spec)
    return spec


def _check_donors(r: Reader, spec: TrainingSpec) -> None:
    """Every cell left out of ``training.search.sizes`` needs its donor (same method, strategy, k and seed
    at the nearest searched size) in the grid."""
    if spec.search is None:
        return
    cells = {c for g in spec.grids for c in g.cells(spec.seeds)}
    for cell in sorted(cells, key=lambda c: c.name):
        donor = spec.search.donor(cell)
        if donor is not None and donor not in cells:
            message = f"{cell.name} takes its hyper-parameters from {donor.name}, which is not in the grid"
            raise r.error("training.search.sizes", message)


def _search(r: Reader, value, hyper: dict, sizes: set[int]) -> SearchSpec:
    """``training.search``: positive learning rates and epoch counts, optionally the training sizes searched
    (each one of the grid's); needs a validation hold-out."""
    key = "training.search"
    data = r.mapping(value, key, SEARCH_KEYS, required=SEARCHED)
    lists = {}
    for name in SEARCHED:
        items = r.items(data[name], f"{key}.{name}")
        for i, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, int | float) or item <= 0:
                raise r.error(f"{key}.{name}[{i}]", f"must be a positive number, got {kind_of(item)}")
        lists[name] = tuple(dict.fromkeys(float(item) for item in items))
    searched = None
    if data.get("sizes") is not None:
        searched = tuple(dict.fromkeys(r.integers(data["sizes"], f"{key}.sizes")))
        for i, size in enumerate(searched):
            if size not in sizes:
                raise r.error(f"{key}.sizes[{i}]", f"{size} is not a training size ({sorted(sizes)})")
    if not hyper.get("validation_fraction", 0) > 0:
        raise r.error(key, "needs training.hyper.validation_fraction > 0: candidates are chosen by its loss")
    for name in SEARCHED:
        if name in hyper:
            raise r.error(f"training.hyper.{name}", "set by training.search; give it there only")
    if hyper.get("max_steps", -1) > 0:
        raise r.error("training.hyper.max_steps", "overrides the searched epochs; remove it")
    return SearchSpec(lists["learning_rate"], lists["epochs"], searched)


def _build_options(r: Reader, value, key: str = "training.build") -> dict:
    from rait.build_data import BuildConfig

    options = r.options(value, key, {f.name for f in dataclasses.fields(BuildConfig)} - _SET_BY_RUNNER)
    try:
        BuildConfig(source="-", output="-", **options).validate()
    except (RaitError, TypeError) as exc:
        raise r.error(key, str(exc)) from None
    return options


def _train_options(r: Reader, value, key: str = "training.hyper") -> dict:
    if not value:
        return r.options(value, key, set())
    from rait.training import TrainConfig

    options = r.options(value, key, {f.name for f in dataclasses.fields(TrainConfig)} - _SET_BY_RUNNER)
    try:
        TrainConfig.from_dict(options, source=r.path)
    except DataError as exc:
        raise r.error(join_key(key, exc.field or ""), exc.reason) from None
    return options


def _predict_options(r: Reader, value) -> dict:
    options = r.options(value, "evaluation.predict", set(PREDICT_DEFAULTS))
    for name, given in options.items():
        default = PREDICT_DEFAULTS[name]
        ok = (
            isinstance(given, type(default))
            if isinstance(default, str | bool)
            else (
                isinstance(given, int | float)
                and not isinstance(given, bool)
                and (isinstance(given, int) or isinstance(default, float))
            )
        )
        if not ok:
            raise r.error(
                f"evaluation.predict.{name}", f"must be a {type(default).__name__}, got {kind_of(given)}"
            )
    if options.get("precision", DEFAULT_PRECISION) not in PRECISIONS:
        raise r.error("evaluation.predict.precision", f"must be one of {', '.join(PRECISIONS)}")
    if not 0 <= options.get("threshold", 0.0) <= 1:
        raise r.error("evaluation.predict.threshold", f"must be from 0 to 1, got {options['threshold']}")
    return options


def _evaluation(r: Reader, data, lang: str, training: TrainingSpec) -> EvaluationSpec:
    data = r.mapping(data, "evaluation", _EVALUATION_KEYS, required=("benchmarks",))
    benchmarks, files = _benchmarks(r, data["benchmarks"], lang)
    base = r.boolean(data.get("base", True), "evaluation.base")
    raw_modes = data.get("modes", ["none"])
    modes = [
        _mode(r, m, f"evaluation.modes[{i}]", base, tuple(training.recipes))
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
        max_examples=r.integer(data.get("max_examples", DEFAULT_MAX_EXAMPLES), "evaluation.max_examples", 1),
        seed=r.integer(data.get("seed", DEFAULT_SEED), "evaluation.seed"),
        predict=_predict_options(r, data.get("predict")),
        protocol=r.choice(data.get("protocol", "uniner"), "evaluation.protocol", PROTOCOLS),
        files=files,
    )


_FILE_KEYS = ("file", "name", "format", "label_map", "max_examples", "columns", "tag_names")


def _benchmarks(r: Reader, value, lang: str) -> tuple[tuple[str, ...], dict[str, FileSource]]:
    """Registered benchmark names, or data files: a path, or a mapping ``{file, name, format, label_map,
    max_examples, columns, tag_names}`` (see :class:`rait.data.file_benchmarks.FileSource`)."""
    from rait.data.benchmarks import BENCHMARKS

    names: list[str] = []
    files: dict[str, FileSource] = {}
    for i, entry in enumerate(r.items(value, "evaluation.benchmarks")):
        key = f"evaluation.benchmarks[{i}]" if isinstance(value, list) else "evaluation.benchmarks"
        if isinstance(entry, dict):
            source = _file_source(r, r.mapping(entry, key, _FILE_KEYS, required=("file",)), key)
            name = source.name
        else:
            entry = r.string(entry, key)
            if entry in BENCHMARKS:
                if BENCHMARKS[entry].lang != lang:
                    raise r.error(
                        key,
                        f"benchmark {entry!r} is {BENCHMARKS[entry].lang}, the experiment's lang is {lang}",
                    )
                name, source = entry, None
            elif "/" in entry or Path(entry).suffix:
                source = _file_source(r, {"file": entry}, key)
                name = source.name
            else:
                raise r.error(
                    key,
                    f"unknown benchmark {entry!r}; must be one of {', '.join(BENCHMARKS)}, "
                    "or the path of a data file",
                )
        if source is not None:
            if name in BENCHMARKS or name in files:
                raise r.error(key, f"benchmark name {name!r} is already taken; give the file another name")
            files[name] = source
        if name in names:
            raise r.error(key, f"benchmark {name!r} is listed twice")
        names.append(name)
    return tuple(names), files


def _file_source(r: Reader, data: dict, key: str) -> FileSource:
    from rait.data.file_benchmarks import TEXT_FORMAT
    from rait.data.formats import LOAD_FORMATS, parse_columns
    from rait.data.labels import parse_label_map

    path = Path(r.string(data["file"], join_key(key, "file")))
    if not path.exists():
        raise r.error(key, f"benchmark file {path} does not exist (relative paths are from {Path.cwd()})")
    fmt = data.get("format")
    if fmt is not None:
        r.choice(fmt, join_key(key, "format"), (*LOAD_FORMATS, TEXT_FORMAT))
    label_map = data.get("label_map")
    if label_map is not None:
        try:
            parse_label_map(r.string(label_map, join_key(key, "label_map")))
        except RaitError as exc:
            raise r.error(join_key(key, "label_map"), str(exc)) from None
    columns = data.get("columns")
    if columns is not None:
        try:
            spec = ",".join(map(str, columns)) if isinstance(columns, list) else str(columns)
            columns = parse_columns(spec)
        except RaitError as exc:
            raise r.error(join_key(key, "columns"), str(exc)) from None
    tag_names = data.get("tag_names")
    if tag_names is not None:
        tag_names = tuple(
            r.string(t, f"{join_key(key, 'tag_names')}[{n}]")
            for n, t in enumerate(r.items(tag_names, join_key(key, "tag_names")))
        )
    size = data.get("max_examples")
    return FileSource(
        path=path,
        name=r.string(data["name"], join_key(key, "name")) if "name" in data else benchmark_name(path),
        format=fmt,
        label_map=label_map,
        max_examples=None if size is None else r.integer(size, join_key(key, "max_examples"), 1),
        columns=columns,
        tag_names=tag_names,
    )


def _mode(r: Reader, data, key: str, base: bool, recipes: tuple[str, ...]) -> ModeSpec:
    if isinstance(data, str):
        data = {"kind": data}
    data = r.mapping(data, key, _MODE_KEYS, required=("kind",))
    kind = r.choice(data["kind"], f"{key}.kind", EXAMPLE_MODES)
    if kind == "none":
        for name in ("strategies", "k", "pool_sizes"):
            if name in data:
                raise r.error(join_key(key, name), "only for out-domain / in-domain modes")
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
            seeds=r.integers(sel["seeds"], f"{k}.seeds") if "seeds" in sel else None,
            recipes=tuple(
                "" if v == "none" else v
                for v in r.choices(sel["recipes"], f"{k}.recipes", ("none", *recipes))
            )
            if "recipes" in sel
            else None,
        )
    decodings = r.choices(data.get("decodings", ["free"]), f"{key}.decodings", DECODINGS)
    if kind == "none":
        return ModeSpec(kind, models=selector, decodings=decodings)
    return ModeSpec(
        kind,
        strategies=r.choices(data.get("strategies", ["nn"]), f"{key}.strategies", STRATEGIES),
        k=r.integers(data.get("k", [2]), f"{key}.k", 1),
        pool_sizes=r.integers(data["pool_sizes"], f"{key}.pool_sizes", 1) if kind == "in-domain" else (),
        models=selector,
        decodings=decodings,
    )
