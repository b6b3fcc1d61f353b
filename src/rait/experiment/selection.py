"""Model selection without the test sets: a search over learning rate x epochs per training cell, decided
by validation loss on conversations held out of the cell's own training data
(``training.hyper.validation_fraction``).

Every candidate is a full training run that keeps its best checkpoint by validation loss
(:func:`rait.training.train`); the cell's model is the candidate with the lowest best validation loss
(ties: the first in search order). The held-out conversations are the same passages for a vanilla and an
RA-IT cell of the same size and seed (same sample, same seeded split), and the same rule picks both models.

With ``sizes`` the search runs only at those training-set sizes; a cell of another size is trained once with
the hyper-parameters chosen for its donor, the searched cell of the same method, strategy, k and seed at the
nearest size (smaller preferred), and still keeps its best checkpoint by validation loss."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rait.experiment.cells import TrainCell

SEARCHED = ("learning_rate", "epochs")
SEARCH_KEYS = (*SEARCHED, "sizes")


@dataclass(frozen=True, slots=True)
class SearchSpec:
    """``training.search``: the learning rates and epoch counts tried, every combination once."""

    learning_rates: tuple[float, ...]
    epochs: tuple[float, ...]
    sizes: tuple[int, ...] | None = None  # None: every size is searched

    def candidates(self) -> list[dict]:
        """Hyper-parameter overrides in search order (learning rate outer, epochs inner)."""
        return [{"learning_rate": lr, "epochs": ep} for lr in self.learning_rates for ep in self.epochs]

    def describe(self) -> dict:
        """The searched space (``sizes`` aside: it decides which cells are searched, not how)."""
        return {"learning_rate": list(self.learning_rates), "epochs": list(self.epochs)}

    def donor(self, cell: TrainCell) -> TrainCell | None:
        """The searched cell whose choice ``cell`` is trained with: same method, strategy, k and seed at the
        nearest searched size (the smaller on a tie); None when ``cell``'s size is searched."""
        if self.sizes is None or cell.size in self.sizes:
            return None
        return dataclasses.replace(cell, size=min(self.sizes, key=lambda s: (abs(s - cell.size), s)))


def candidate_name(hyper: dict) -> str:
    """Directory name of one candidate, e.g. ``lr0.0002-ep3``."""
    return f"lr{hyper['learning_rate']:g}-ep{hyper['epochs']:g}"


def validation_loss(model_dir: Path) -> float | None:
    """The best validation loss of a finished training run (None when it held nothing out)."""
    from rait.training import read_validation

    validation = read_validation(model_dir)
    return None if validation is None else validation.get("best_eval_loss")


def select(
    candidates: Sequence[tuple[dict, Path]], score: Callable[[Path], float | None]
) -> tuple[int, list[dict]]:
    """Index of the candidate with the lowest score, and every candidate's hyper-parameters and score.
    Raises ValueError when no candidate has a score."""
    table = [{**hyper, "validation_loss": score(path)} for hyper, path in candidates]
    scored = [i for i, row in enumerate(table) if row["validation_loss"] is not None]
    if not scored:
        raise ValueError("no search candidate has a validation loss (is validation_fraction 0?)")
    return min(scored, key=lambda i: table[i]["validation_loss"]), table
