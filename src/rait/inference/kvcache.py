"""A decoding cache that grows in place: each layer's keys and values live in buffers with spare room along
the sequence, and a step writes its tokens into the room instead of concatenating (transformers'
``DynamicLayer`` copies the whole cache into a newly allocated tensor at every step; in a 47-row decoding
step of the built-in model that concatenation took 40% of the operator time, docs/inference.md).

The layers expose the filled part as views, so attention reads exactly the values a ``DynamicLayer`` would
hold: answers are identical (``tests/test_kvcache.py``). :func:`rait.inference.prefill.prefill` builds its
caches of them: each bucket's, from the shared start with room for the bucket's tokens, and the rows'."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

SPARE_SLOTS = 64  # room added beyond the filled slots whenever a buffer is (re)allocated


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys``/``values`` are views of the first ``length`` slots of larger
    buffers, copied from ``keys`` and ``values`` with room for ``room`` more slots (and
    :data:`SPARE_SLOTS`); :meth:`update` writes into the room, reallocating only when full."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int = 0):
        super().__init__()
        self.device = keys.device
        self.is_initialized = True
        self._buffers = (_with_room(keys, room), _with_room(values, room))
        self._view(keys.shape[-2])

    def _view(self, length: int) -> None:
        self.length = length
        self.keys, self.values = (buffer[:, :, :length] for buffer in self._buffers)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self._buffers[0].shape[-2]:
            filled = (buffer[:, :, : self.length] for buffer in self._buffers)
            self._buffers = tuple(_with_room(states, end - self.length) for states in filled)
        for buffer, states in zip(self._buffers, (key_states, value_states), strict=True):
            buffer[:, :, self.length : end] = states
        self._view(end)
        return self.keys, self.values

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, not {tokens_to_remove}")
        self._view(self.length + tokens_to_remove)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._buffers = tuple(buffer[indices] for buffer in self._buffers)
        self._view(self.length)

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._buffers = tuple(buffer.repeat_interleave(repeats, dim=0) for buffer in self._buffers)
        self._view(self.length)


def _with_room(states: torch.Tensor, needed: int) -> torch.Tensor:
    """A buffer holding ``states`` with room for ``needed`` more slots and :data:`SPARE_SLOTS` beyond."""
    batch, heads, length, dim = states.shape
    buffer = states.new_empty((batch, heads, length + needed + SPARE_SLOTS, dim))
    buffer[:, :, :length] = states
    return buffer
