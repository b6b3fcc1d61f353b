"""The cells of an experiment grid: training cells, inference modes, eval cells, and the grid and
mode specs that expand into them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rait.records import DEFAULT_SEED


@dataclass(frozen=True, slots=True)
class TrainCell:
    """One fine-tuned model: training-set size, method, retrieval strategy and k (RA-IT only), seed (of the
    training sample, its retrieval and hold-out, and of training), ``train_seed``, set only when training
    (data order and initialisation) takes another seed than the sample: the same data, another run, and the
    named recipe (``training.recipes``: build and training options over the experiment's; "" none)."""

    size: int
    method: str
    strategy: str | None = None
    k: int = 0
    seed: int = DEFAULT_SEED
    train_seed: int | None = None
    recipe: str = ""

    @property
    def name(self) -> str:
        suffix = "" if self.train_seed is None else f"-t{self.train_seed}"
        if self.method == "vanilla":
            name = f"n{self.size}-vanilla-s{self.seed}{suffix}"
        else:
            name = f"n{self.size}-ra-it-{self.strategy}-k{self.k}-s{self.seed}{suffix}"
        return f"{name}-{self.recipe}" if self.recipe else name

    @property
    def training_seed(self) -> int:
        """The seed of training: data order and initialisation."""
        return self.seed if self.train_seed is None else self.train_seed

    def describe(self) -> dict:
        described = {
            "size": self.size,
            "method": self.method,
            "strategy": self.strategy,
            "k": self.k,
            "seed": self.seed,
        }
        if self.train_seed is not None:  # only when set: cells finished before train seeds existed stay done
            described["train_seed"] = self.train_seed
        if self.recipe:  # only when set: steps finished before recipes existed stay done
            described["recipe"] = self.recipe
        return described


@dataclass(frozen=True, slots=True)
class InferenceMode:
    """How examples are given at inference: none, out-domain (from the training pool) or in-domain
    (nearest from ``pool_size`` labelled examples of the benchmark's train split); and the decoding,
    ``free`` (the paper's) or ``constrained`` (:mod:`rait.inference.constrained`)."""

    kind: str
    strategy: str | None = None
    k: int = 0
    pool_size: int | None = None
    decoding: str = "free"

    @property
    def name(self) -> str:
        suffix = "" if self.decoding == "free" else f"-{self.decoding}"
        if self.kind == "none":
            return "none" + suffix
        if self.kind == "out-domain":
            return f"out-{self.strategy}-k{self.k}" + suffix
        return f"in{self.pool_size}-{self.strategy}-k{self.k}" + suffix

    def describe(self) -> dict:
        described = {
            "mode": self.kind,
            "inference_strategy": self.strategy,
            "inference_k": self.k or None,
            "pool_size": self.pool_size,
        }
        if self.decoding != "free":  # only when set: steps finished before decodings existed stay done
            described["decoding"] = self.decoding
        return described


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
    """A product of training-cell factors; vanilla cells ignore ``strategies`` and ``k``. ``seeds`` (``None``:
    the experiment's) sample the training sets; ``train_seeds`` (``None``: each sample's own seed) train
    every sample once per training seed."""

    sizes: tuple[int, ...]
    methods: tuple[str, ...]
    strategies: tuple[str, ...]
    k: tuple[int, ...]
    train_seeds: tuple[int, ...] | None = None
    seeds: tuple[int, ...] | None = None
    recipes: tuple[str, ...] = ("",)

    def cells(self, seeds: Sequence[int]) -> list[TrainCell]:
        cells = []
        for recipe in self.recipes:
            for size in self.sizes:
                for method in self.methods:
                    for seed in self.seeds or seeds:
                        for t in self.train_seeds or (seed,):
                            t = None if t == seed else t
                            if method == "vanilla":
                                cells.append(TrainCell(size, method, seed=seed, train_seed=t, recipe=recipe))
                                continue
                            cells += [
                                TrainCell(size, method, s, k, seed, t, recipe)
                                for s in self.strategies
                                for k in self.k
                            ]
        return cells


@dataclass(frozen=True, slots=True)
class ModelSelector:
    """Which models an inference mode is applied to; ``None`` = no restriction on that factor.
    ``strategies`` and ``k`` restrict RA-IT models only; ``seeds`` match the training seed; ``recipes``
    names recipes ("" the plain one)."""

    base: bool = True
    sizes: tuple[int, ...] | None = None
    methods: tuple[str, ...] | None = None
    strategies: tuple[str, ...] | None = None
    k: tuple[int, ...] | None = None
    seeds: tuple[int, ...] | None = None
    recipes: tuple[str, ...] | None = None

    def matches(self, cell: TrainCell | None) -> bool:
        if cell is None:
            return self.base
        if self.recipes is not None and cell.recipe not in self.recipes:
            return False
        if self.sizes is not None and cell.size not in self.sizes:
            return False
        if self.seeds is not None and cell.training_seed not in self.seeds:
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
    decodings: tuple[str, ...] = ("free",)

    def modes(self) -> list[InferenceMode]:
        """The modes, decoding by decoding (a model is loaded once per decoding)."""
        if self.kind == "none":
            return [InferenceMode("none", decoding=d) for d in self.decodings]
        if self.kind == "out-domain":
            return [
                InferenceMode("out-domain", s, k, decoding=d)
                for d in self.decodings
                for s in self.strategies
                for k in self.k
            ]
        return [
            InferenceMode("in-domain", s, k, n, decoding=d)
            for d in self.decodings
            for n in self.pool_sizes
            for s in self.strategies
            for k in self.k
        ]
