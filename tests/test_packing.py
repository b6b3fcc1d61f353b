"""Packed bf16 linear layers (rait.inference.packing): the same results as F.linear, only at inference."""

from __future__ import annotations

import copy

import pytest
import torch

from rait.inference import PassageQuery, load_predictor
from rait.inference import packing as packing_module
from rait.inference.packing import pack_linears
from rait.testing import save_tiny_model, tiny_model_and_tokenizer

needs_onednn_bf16 = pytest.mark.skipif(
    not packing_module._available(), reason="oneDNN bf16 kernels are not available on this CPU"
)


def _bf16_model():
    model, _ = tiny_model_and_tokenizer()
    return model.to(torch.bfloat16)


@needs_onednn_bf16
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (3, 5), (2, 70)])
def test_packed_model_gives_bit_identical_scores(shape):
    plain, packed = _bf16_model(), _bf16_model()
    assert pack_linears(packed) == sum(isinstance(m, torch.nn.Linear) for m in packed.modules()) > 0
    ids = torch.randint(0, plain.config.vocab_size, shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(plain(ids).logits, packed(ids).logits)


@needs_onednn_bf16
def test_packing_twice_routes_nothing_more():
    model = _bf16_model()
    assert pack_linears(model) > 0
    assert pack_linears(model) == 0


@needs_onednn_bf16
def test_a_weight_changed_after_packing_is_used():
    layer = torch.nn.Linear(64, 32, bias=True).to(torch.bfloat16)
    pack_linears(layer)
    x = torch.randn(4, 64).to(torch.bfloat16)
    with torch.inference_mode():
        layer(x)
    with torch.no_grad():
        layer.weight.mul_(-2)
    with torch.inference_mode():
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))


@needs_onednn_bf16
def test_a_layer_made_in_inference_mode_is_packed():
    with torch.inference_mode():
        layer = torch.nn.Linear(64, 32).to(torch.bfloat16)
        assert pack_linears(layer) == 1
        x = torch.randn(3, 64).to(torch.bfloat16)
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))


@needs_onednn_bf16
def test_a_packed_model_can_be_copied_and_saved(tmp_path):
    model = _bf16_model()
    pack_linears(model)
    ids = torch.tensor([[3, 5, 7]])
    with torch.inference_mode():
        expected = model(ids).logits  # packs every layer
    copied = copy.deepcopy(model)
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    for clone in (copied, loaded):
        assert all(m.forward.module is m for m in clone.modules() if "forward" in vars(m))
    with torch.inference_mode():
        assert torch.equal(copied(ids).logits, expected)
        assert torch.equal(loaded(ids).logits, expected)


@needs_onednn_bf16
def test_training_still_gets_gradients():
    layer = torch.nn.Linear(64, 32).to(torch.bfloat16)
    pack_linears(layer)
    layer(torch.randn(4, 64).to(torch.bfloat16)).float().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_fp32_layers_are_left_as_they_are():
    model, _ = tiny_model_and_tokenizer()
    assert pack_linears(model) == 0
    assert not any("forward" in vars(m) for m in model.modules())


@needs_onednn_bf16
def test_bf16_predictor_answers_equal_unpacked_ones(tmp_path, monkeypatch):
    tiny = str(save_tiny_model(tmp_path / "tiny"))
    queries = [
        PassageQuery(
            "Ada Lovelace lived in London with Charles Babbage.", ("person", "city", "year"), (), "en"
        ),
        PassageQuery("The Louvre is in Paris.", ("museum", "city"), (), "en"),
    ]
    packed = load_predictor(tiny, precision="bf16", max_new_tokens=12)
    assert any("forward" in vars(m) for m in packed.model.modules())
    monkeypatch.setattr("rait.inference.transformers.pack_linears", lambda model: 0)
    plain = load_predictor(tiny, precision="bf16", max_new_tokens=12)
    assert not any("forward" in vars(m) for m in plain.model.modules())
    assert packed.answer_many(queries) == plain.answer_many(queries)
