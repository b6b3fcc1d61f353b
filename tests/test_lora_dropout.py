"""rait.lora_dropout: the cheaper LoRA dropout keeps dropout's distribution, scaling and determinism."""

from __future__ import annotations

import pytest
import torch

from rait.lora_dropout import Int16Dropout, use_int16_dropout
from rait.testing import tiny_model_and_tokenizer


def test_drops_the_rounded_probability_and_keeps_the_expectation():
    dropout = Int16Dropout(0.05)
    assert dropout.p == round(0.05 * 65536) / 65536
    x = torch.ones(1000, 1001)  # not a multiple of 4 values: the last draw is partly used
    torch.manual_seed(0)
    y = dropout(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - dropout.p) < 5 * (dropout.p * (1 - dropout.p) / x.numel()) ** 0.5
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - dropout.p)))
    assert abs(y.mean().item() - 1) < 0.005


def test_seeded_masks_repeat_and_gradients_follow_the_mask():
    dropout = Int16Dropout(0.3)
    x = (torch.rand(64, 33) + 0.5).to(torch.bfloat16).requires_grad_()
    torch.manual_seed(1)
    first = dropout(x)
    torch.manual_seed(1)
    assert torch.equal(first, dropout(x)) and first.dtype == torch.bfloat16
    assert not torch.equal(first, dropout(x))
    first.float().sum().backward()
    assert torch.equal(x.grad == 0, first == 0)  # x has no zeros: exactly the dropped values get no gradient


def test_eval_mode_and_zero_probability_pass_through():
    x = torch.randn(8, 8)
    assert Int16Dropout(0.0)(x) is x
    assert Int16Dropout(0.5).eval()(x) is x
    with pytest.raises(ValueError):
        Int16Dropout(1.0)


def test_replaces_every_lora_dropout_of_a_peft_model():
    from peft import LoraConfig, get_peft_model

    model, _ = tiny_model_and_tokenizer()
    targets = ["q_proj", "v_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=4, lora_dropout=0.1, target_modules=targets))
    layers = model.base_model.model.config.num_hidden_layers
    assert use_int16_dropout(model) == layers * len(targets)
    kinds = {type(d) for m in model.modules() if hasattr(m, "lora_dropout") for d in m.lora_dropout.values()}
    assert kinds == {Int16Dropout}
    assert use_int16_dropout(model) == 0
