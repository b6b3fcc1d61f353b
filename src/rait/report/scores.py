"""What the report's views compare: a results row's setting (:class:`Setting`, its labels and order) and
F1 per setting and benchmark averaged over seeds, with bootstrap intervals where the results carry
per-sentence counts (:class:`Scores`)."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean, stdev
from typing import NamedTuple

from rait.bootstrap import DEFAULT_SAMPLES, DEFAULT_SEED, BootstrapF1, Estimate
from rait.errors import RaitError

STRATEGY_NAMES = {
    "nn": "NN",
    "nn_bm25": "NN+BM25",
    "dnn": "DNN",
    "dnn_bm25": "DNN+BM25",
    "random": "Random",
    "mixed_nn": "MixedNN",
}


class Setting(NamedTuple):
    """A row of the results table without its seed and benchmark: what the views compare. ``recipe``: the
    named training recipe of the experiment's extra grids ("" the plain one): another model, never
    averaged with the plain recipe's as if it were another seed."""

    method: str
    size: int | None
    strategy: str | None
    k: int | None
    mode: str
    inference_strategy: str | None
    inference_k: int | None
    pool_size: int | None
    decoding: str = "free"
    recipe: str = ""

    @classmethod
    def of(cls, row: dict) -> Setting:
        """The setting of a results row (rows from before decodings existed are free decoding; rows
        without a recipe, the plain one)."""
        defaults = {"decoding": "free", "recipe": ""}
        values = (row.get(name, defaults[name]) if name in defaults else row[name] for name in cls._fields)
        return cls(*values)

    @property
    def without_examples(self) -> Setting:
        """The same model and decoding with no examples at inference."""
        return self._replace(mode="none", inference_strategy=None, inference_k=None, pool_size=None)

    @property
    def model(self) -> tuple:
        return (self.method, self.size, self.strategy, self.k, self.recipe)

    @property
    def model_label(self) -> str:
        recipe = f" [{self.recipe}]" if self.recipe else ""
        if self.method == "base":
            return "Base model"
        if self.method == "vanilla":
            return "Vanilla IT" + recipe
        return f"RA-IT ({_strategy(self.strategy)}, k={self.k})" + recipe

    @property
    def sized_label(self) -> str:
        return self.model_label + (f" ({self.size:,})" if self.size is not None else "")

    @property
    def inference_label(self) -> str:
        suffix = "" if self.decoding == "free" else f", {self.decoding} decoding"
        if self.mode == "none":
            return "no examples" + suffix
        if self.mode == "out-domain":
            return f"out-domain {_strategy(self.inference_strategy)}, k={self.inference_k}" + suffix
        return (
            f"in-domain N={self.pool_size:,} {_strategy(self.inference_strategy)}, k={self.inference_k}"
            + suffix
        )


def _decoding_order(decoding: str) -> tuple:
    """Free decoding (the paper's) first, then by name."""
    return (decoding != "free", decoding)


_MODES = ("none", "out-domain", "in-domain")


def _inference_order(setting: Setting) -> tuple:
    """No examples, then out-domain, then in-domain examples; then by pool size, strategy and k."""
    return (
        _MODES.index(setting.mode) if setting.mode in _MODES else len(_MODES),
        setting.pool_size or 0,
        setting.inference_strategy or "",
        setting.inference_k or 0,
    )


def _strategy(name: str | None) -> str:
    return STRATEGY_NAMES.get(name or "", str(name))


def _strategy_rank(strategy: str | None) -> int:
    """A retrieval strategy's place in :data:`STRATEGY_NAMES`; unknown ones (and None) after them."""
    return list(STRATEGY_NAMES).index(strategy) if strategy in STRATEGY_NAMES else 99


def _model_order(setting: Setting) -> tuple:
    method = (
        ("base", "vanilla", "ra-it").index(setting.method)
        if setting.method in ("base", "vanilla", "ra-it")
        else 3
    )
    return (setting.size or 0, method, _strategy_rank(setting.strategy), setting.k or 0, setting.recipe)


def _pair_order(setting: Setting) -> tuple:
    """The order of the difference views' rows: model, then decoding, then inference settings."""
    return (_model_order(setting), _decoding_order(setting.decoding), _inference_order(setting))


def _control_last(strategy: str | None) -> tuple:
    """Strategies in :data:`STRATEGY_NAMES` order with Random, the control, last."""
    return (strategy == "random", _strategy_rank(strategy), strategy or "")


def _vanilla_of(setting: Setting) -> Setting:
    """The vanilla IT model of an RA-IT setting: same size and inference settings."""
    return setting._replace(method="vanilla", strategy=None, k=None)


Cell = float | Estimate | None  # a table number: a plain score, or one with its interval


class Scores:
    """F1 per (setting, benchmark), averaged over seeds; ``average`` needs every benchmark. ``rows``: the
    results rows per (setting, benchmark), one per seed. With per-sentence counts in every row of a
    (setting, benchmark), its bootstrap replicates too (``bootstrap``)."""

    def __init__(self, results: dict, *, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED):
        self.benchmarks: list[str] = list(results["benchmarks"])
        grouped: dict[Setting, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for row in results["rows"]:
            grouped[Setting.of(row)][row["benchmark"]].append(row)
            if row["benchmark"] not in self.benchmarks:
                self.benchmarks.append(row["benchmark"])
        self.rows = {s: dict(per) for s, per in grouped.items()}
        self.f1 = {
            s: {b: mean(float(r["f1"]) for r in seeds) for b, seeds in per.items()}
            for s, per in self.rows.items()
        }
        runs = {  # the per-sentence counts of every seed, where every seed has them
            s: {
                b: [r["sentences"] for r in seeds]
                for b, seeds in per.items()
                if all(r.get("sentences") is not None for r in seeds)
            }
            for s, per in self.rows.items()
        }
        self.has_intervals = any(runs.values())
        self.bootstrap = BootstrapF1(runs, samples=samples, seed=seed) if self.has_intervals else None

    def settings(self, **where) -> list[Setting]:
        """Settings whose fields equal ``where``'s values, in model order; free decoding (the paper's
        protocol) unless ``where`` names a decoding."""
        where.setdefault("decoding", "free")
        found = [s for s in self.f1 if all(getattr(s, k) == v for k, v in where.items())]
        return sorted(found, key=_model_order)

    def average(self, setting: Setting) -> float | None:
        per = self.f1.get(setting, {})
        if not self.benchmarks or any(b not in per for b in self.benchmarks):
            return None
        return mean(per[b] for b in self.benchmarks)

    def score(self, setting: Setting, benchmark: str | None = None) -> float | None:
        """F1 on one benchmark, or (``None``) the average over benchmarks."""
        return self.average(setting) if benchmark is None else self.f1.get(setting, {}).get(benchmark)

    def precision_recall(self, setting: Setting) -> list[tuple[float | None, float | None, float | None]]:
        """(precision, recall, F1) per benchmark, then their means over benchmarks (averaged over seeds);
        ``[]`` when a row lacks precision or recall (older results)."""
        per = self.rows.get(setting, {})
        if not per or any(
            r.get(m) is None for seeds in per.values() for r in seeds for m in ("precision", "recall")
        ):
            return []
        found = [
            tuple(mean(float(r[m]) for r in per[b]) for m in ("precision", "recall", "f1"))
            if b in per
            else (None,) * 3
            for b in self.benchmarks
        ]
        whole = all(None not in row for row in found)
        return found + [tuple(mean(row[i] for row in found) for i in range(3)) if whole else (None,) * 3]

    def values(self, setting: Setting) -> list[float | None]:
        """Per-benchmark F1 then the average."""
        per = self.f1.get(setting, {})
        return [per.get(b) for b in self.benchmarks] + [self.average(setting)]

    def interval(self, setting: Setting, benchmark: str | None = None) -> Estimate | None:
        """The bootstrap interval of one benchmark's F1, or (``None``) of the average over benchmarks."""
        if self.bootstrap is None:
            return None
        return self.bootstrap.interval(setting, benchmark if benchmark is not None else self.benchmarks)

    def average_cell(self, setting: Setting) -> Cell:
        """The average F1, with its interval where there is one."""
        average = self.average(setting)
        return None if average is None else (self.interval(setting) or average)

    def cells(self, setting: Setting) -> list[Cell]:
        """Like :meth:`values`, each score with its interval where there is one."""
        per = self.f1.get(setting, {})
        cells: list[Cell] = [
            None if b not in per else (self.interval(setting, b) or per[b]) for b in self.benchmarks
        ]
        return cells + [self.average_cell(setting)]

    def difference(self, setting: Setting, other: Setting, benchmark: str | None = None) -> Estimate | None:
        """Paired bootstrap of ``setting`` minus ``other`` on one benchmark, or (``None``) the average."""
        if self.bootstrap is None:
            return None
        return self.bootstrap.difference(
            setting, other, benchmark if benchmark is not None else self.benchmarks
        )

    def pairs(self) -> list[tuple[Setting, Setting]]:
        """Every RA-IT setting with the vanilla IT setting of the same size, inference settings and decoding,
        where both have results: free decoding first, then in model order."""
        ra_it = sorted(
            (s for s in self.f1 if s.method == "ra-it"), key=lambda s: (s.decoding != "free", _model_order(s))
        )
        return [(s, _vanilla_of(s)) for s in ra_it if _vanilla_of(s) in self.f1]

    def decoding_pairs(self) -> list[tuple[Setting, Setting]]:
        """Every two decodings of the same model and inference settings, both with results: the later
        decoding (free first, then by name) with the earlier as baseline; in model order."""
        groups: dict[tuple, list[Setting]] = defaultdict(list)
        for s in sorted(self.f1, key=lambda s: (_model_order(s), _decoding_order(s.decoding))):
            groups[s._replace(decoding="")].append(s)
        return [(s, base) for group in groups.values() for i, s in enumerate(group) for base in group[:i]]

    def strategy_pairs(self) -> list[tuple[Setting, Setting]]:
        """Every two RA-IT settings that differ only in the training retrieval strategy, both with results:
        the baseline is Random (the paper's control) where it is one of the two, else the later strategy of
        :data:`STRATEGY_NAMES`; in model, decoding and inference order."""
        groups: dict[Setting, list[Setting]] = defaultdict(list)
        for s in sorted((s for s in self.f1 if s.method == "ra-it"), key=lambda s: _control_last(s.strategy)):
            groups[s._replace(strategy=None)].append(s)
        pairs = [(s, b) for group in groups.values() for i, s in enumerate(group) for b in group[i + 1 :]]
        return sorted(
            pairs,
            key=lambda p: _pair_order(p[0]),
        )

    def baseline_pairs(self, model: str) -> list[tuple[Setting, Setting]]:
        """Every setting with the setting of the results model named ``model`` (a training cell, e.g.
        ``n2217-vanilla-s42``) without examples in the same decoding, both with results; in model, decoding
        and inference order. A clear error naming the models when ``model`` has no such setting."""
        baselines = {
            s.decoding: s
            for s, per in self.rows.items()
            if s.mode == "none" and any(r["model"] == model for runs in per.values() for r in runs)
        }
        if not baselines:
            names = sorted({r["model"] for per in self.rows.values() for runs in per.values() for r in runs})
            raise RaitError(
                f"--baseline: no model {model!r} without examples in these results; "
                f"models: {', '.join(names)}"
            )
        found = sorted(
            (s for s in self.f1 if s.decoding in baselines and s != baselines[s.decoding]),
            key=lambda s: (_decoding_order(s.decoding), _model_order(s), _inference_order(s)),
        )
        return [(s, baselines[s.decoding]) for s in found]

    def recipe_pairs(self) -> list[tuple[Setting, Setting]]:
        """Every setting of a named training recipe with the same setting of the plain recipe, both with
        results; in model, decoding and inference order."""
        found = sorted(
            (s for s in self.f1 if s.recipe and s._replace(recipe="") in self.f1),
            key=_pair_order,
        )
        return [(s, s._replace(recipe="")) for s in found]

    def example_pairs(self) -> list[tuple[Setting, Setting]]:
        """Every setting with examples at inference (out-domain or in-domain) with the same model and
        decoding without examples, both with results; in model, decoding and inference order."""
        with_examples = sorted(
            (s for s in self.f1 if s.mode != "none"),
            key=_pair_order,
        )
        pairs = [(s, s.without_examples) for s in with_examples]
        return [(s, none) for s, none in pairs if none in self.f1]

    def seed_runs(self, setting: Setting) -> dict[str, float] | None:
        """Average F1 over benchmarks of each training run (results model name) of ``setting``, where it has
        two runs or more, each scored on every benchmark; else None."""
        per_model: dict[str, dict[str, float]] = defaultdict(dict)
        for benchmark, runs in self.rows.get(setting, {}).items():
            for row in runs:
                per_model[row["model"]][benchmark] = float(row["f1"])
        complete = {m: f for m, f in per_model.items() if all(b in f for b in self.benchmarks)}
        if len(complete) < 2 or len(complete) != len(per_model) or not self.benchmarks:
            return None
        return {m: mean(f[b] for b in self.benchmarks) for m, f in complete.items()}

    def seed_spread(self) -> list[tuple[Setting, dict[str, float], float, float]]:
        """Settings trained more than once: (setting, each run's average F1, their mean, their standard
        deviation), in model and inference order."""
        found = []
        for setting in sorted(self.f1, key=lambda s: (_decoding_order(s.decoding), _model_order(s))):
            if (runs := self.seed_runs(setting)) is not None:
                found.append((setting, runs, mean(runs.values()), stdev(runs.values())))
        return found
