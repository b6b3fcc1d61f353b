"""A cheaper LoRA dropout: the mask comes from 16-bit random integers, four per 64-bit draw.

peft applies dropout to the input of every LoRA module (seven per transformer layer), and on a CPU drawing
one Bernoulli number per activation made it a fifth to a quarter of a SmolLM2-135M training step
(benchmarks/bench_train.py, docs/training.md). :class:`Int16Dropout` keeps each value with probability
``1 - p`` (``p`` rounded to a multiple of 2^-16: 0.05 becomes 0.0500031) and scales kept values by the
inverse of that probability, so the expectation is unchanged; it draws from the device's default generator,
so seeded runs and resumed runs (whose RNG state the Trainer restores) repeat exactly."""

from __future__ import annotations

import torch

_LEVELS = 1 << 16
_LOWEST = -(1 << 15)


class Int16Dropout(torch.nn.Module):
    """Inverted dropout with the drop probability ``p`` rounded to a multiple of 2^-16."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.dropped_levels = round(p * _LEVELS)
        self.p = self.dropped_levels / _LEVELS  # the probability actually applied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped_levels == 0:
            return x
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(1 << 63), None)
        keep = words.view(torch.int16)[:n].view(x.shape) >= _LOWEST + self.dropped_levels
        return torch.where(keep, x, 0) * (1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_int16_dropout(model: torch.nn.Module) -> int:
    """Replace the ``torch.nn.Dropout`` of every peft LoRA module in ``model``; returns how many."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                dropouts[name] = Int16Dropout(dropout.p)
                replaced += 1
    return replaced
