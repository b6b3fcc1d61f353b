"""The decoding cache that grows in place (rait.inference.kvcache) holds what transformers' DynamicLayer
holds after the same updates, crops and row selections, and changes no answer."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from rait.inference import PassageQuery, Predictor, kvcache
from rait.inference.kvcache import SPARE_SLOTS, GrowingLayer
from rait.testing import tiny_model_and_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def states(rows: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn((rows, 3, length, 4), generator=generator) for _ in range(2))


def test_updates_crops_and_row_selections_hold_what_a_dynamic_layer_holds():
    reference, grown = DynamicLayer(), None
    first = states(5, 7, 0)
    reference.update(*first)
    grown = GrowingLayer(*first)
    steps = [("update", 1), ("update", 9), ("crop", -4), ("select", [0, 2, 4]), ("update", 2 * SPARE_SLOTS)]
    steps += [("update", 3), ("crop", -1), ("update", 1)]
    for seed, (kind, arg) in enumerate(steps, start=1):
        rows = reference.keys.shape[0]
        if kind == "update":
            new = states(rows, arg, seed)
            expected = reference.update(*new)
            assert all(torch.equal(a, b) for a, b in zip(grown.update(*new), expected, strict=True))
        elif kind == "crop":
            reference.crop(arg)
            grown.crop(arg)
        else:
            index = torch.tensor(arg)
            reference.batch_select_indices(index)
            grown.batch_select_indices(index)
        assert torch.equal(grown.keys, reference.keys) and torch.equal(grown.values, reference.values)
        assert grown.get_seq_length() == reference.get_seq_length()
    with pytest.raises(ValueError, match="negative"):
        grown.crop(2)


def test_a_predictor_answers_the_same_with_the_growing_cache(monkeypatch):
    model, tokenizer = tiny_model_and_tokenizer("llama")
    queries = [
        PassageQuery("Barack Obama was born in Honolulu, Hawaii.", ("person", "location")),
        PassageQuery("Apple chief executive Tim Cook met Olaf Scholz in Berlin.", ("person", "organization")),
    ]

    def dynamic(keys, values, room=0):  # what the caches held before: transformers' own layers
        layer = DynamicLayer()
        layer.update(keys.contiguous(), values.contiguous())
        return layer

    found = {}
    for grow in (True, False):
        if not grow:
            monkeypatch.setattr(kvcache, "GrowingLayer", dynamic)
        predictor = Predictor(model, tokenizer, max_new_tokens=24, decoding="constrained", batch_size=3)
        found[grow] = [
            [(a, a.finish_reason, a.scores) for a in answers] for answers in predictor.answer_many(queries)
        ]
    assert found[True] == found[False]
