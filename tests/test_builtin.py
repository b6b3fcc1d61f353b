"""Built-in models (rait.builtin): packaging a trained adapter into the package, and loading it by default
from rait.NER, rait predict and rait serve. A tiny random LoRA adapter stands in for the real one; the
package folder is a temporary directory and the embedded base model a tiny GGUF file."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from safetensors.torch import load_file

from rait import builtin, models
from rait.api import NER
from rait.errors import RaitError
from rait.testing import save_tiny_model, tiny_model_and_tokenizer, write_tiny_gguf

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAME = "smollm2-ner-en"
PROMPT = "You find named entities."  # the trained system prompt, which the packaged model must keep
SHIPPED = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "builtin.json",
    "chat_template.jinja",
    "rait_train_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}
IDS = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("builtin")


@pytest.fixture(scope="module")
def trained(workdir) -> Path:
    """A tiny LoRA adapter laid out as `rait train` leaves it, base model named by a machine path."""
    out = workdir / "run"
    base, tokenizer = tiny_model_and_tokenizer()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.peft_config["default"].base_model_name_or_path = str(save_tiny_model(workdir / "base"))
    peft_model.save_pretrained(out)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    adapter_config["target_modules"] = ["v_proj", "q_proj"]  # PEFT writes its set's order: not always sorted
    (out / "adapter_config.json").write_text(json.dumps(adapter_config))
    tokenizer.save_pretrained(out)
    (out / "rait_train_config.json").write_text(
        json.dumps({"model": "smollm2-135m", "system_prompt": PROMPT})
    )
    for junk in ("README.md", "training_args.bin", "loss_curve.png", "train_log.jsonl", "train_summary.json"):
        (out / junk).write_text("x")
    (out / ".rait.lock").touch()
    checkpoint = out / "checkpoints" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    for junk in ("optimizer.pt", "scheduler.pt", "adapter_model.safetensors", "trainer_state.json"):
        (checkpoint / junk).write_text("x")
    return out


@pytest.fixture(autouse=True)
def embedded(workdir, monkeypatch):
    """The embedded base model is the tiny llama (as a GGUF file, converted once into a module cache)."""
    gguf = workdir / "embedded.gguf"
    if not gguf.exists():
        write_tiny_gguf(gguf)
    monkeypatch.setenv("RAIT_CACHE_DIR", str(workdir / "cache"))
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: gguf)


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """The package's models folder, empty."""
    monkeypatch.setattr(builtin, "MODELS_ROOT", tmp_path / "models")
    return tmp_path / "models"


@pytest.fixture
def packaged(trained, root) -> Path:
    return builtin.package_adapter(trained, NAME, metadata={"source": "run", "scores": {"f1": 12.5}})


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS.to(model.device)).logits


def test_registry():
    assert builtin.is_builtin(NAME) and not builtin.is_builtin(models.DEFAULT_MODEL)
    assert not builtin.is_builtin(None) and builtin.DEFAULT_BUILTIN == NAME
    assert builtin.builtin_path(NAME) == ROOT / "src" / "rait" / "resources" / "models" / NAME
    assert builtin.BUILTIN_MODELS[NAME].base_model == models.DEFAULT_MODEL
    with pytest.raises(RaitError, match="unknown built-in model 'nope'"):
        builtin.builtin_path("nope")


def test_package_keeps_what_inference_needs_in_bf16(trained, packaged, root):
    assert packaged == root / NAME and [p.name for p in root.iterdir()] == [NAME]  # no temporary left
    assert {p.name for p in packaged.iterdir()} == SHIPPED
    original = load_file(trained / "adapter_model.safetensors")
    with safe_open(packaged / "adapter_model.safetensors", "pt") as weights:
        assert set(weights.keys()) == set(original) and original
        for key in weights.keys():
            tensor = weights.get_tensor(key)
            assert tensor.dtype == torch.bfloat16 and original[key].dtype == torch.float32
            assert torch.equal(tensor, original[key].to(torch.bfloat16))
    config = json.loads((packaged / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2-135m"
    assert config["r"] == 4 and config["target_modules"] == ["q_proj", "v_proj"]  # sorted
    for file in ("rait_train_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (packaged / file).read_bytes() == (trained / file).read_bytes()
    info = builtin.builtin_info()
    assert info["name"] == NAME and info["base_model"] == "smollm2-135m" and info["lang"] == "en"
    assert info["metadata"] == {"scores": {"f1": 12.5}, "source": "run"}
    assert set(info["files"]) == SHIPPED - {"builtin.json"}
    size = (packaged / "adapter_model.safetensors").stat().st_size
    assert info["files"]["adapter_model.safetensors"]["bytes"] == size
    assert size < 0.6 * (trained / "adapter_model.safetensors").stat().st_size
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in packaged.iterdir())


def test_package_is_byte_identical_on_repeat(trained, packaged, tmp_path):
    first = {p.name: p.read_bytes() for p in packaged.iterdir()}
    again = builtin.package_adapter(
        trained, NAME, metadata={"scores": {"f1": 12.5}, "source": "run"}, root=tmp_path / "again"
    )
    assert {p.name: p.read_bytes() for p in again.iterdir()} == first
    builtin.package_adapter(trained, NAME, metadata={"source": "run", "scores": {"f1": 12.5}}, overwrite=True)
    assert {p.name: p.read_bytes() for p in packaged.iterdir()} == first
    assert builtin.model_card() == builtin.model_card()


def test_package_refuses_bad_input(trained, root, tmp_path):
    with pytest.raises(RaitError, match="not a trained rait adapter directory: no adapter_config.json"):
        builtin.package_adapter(tmp_path / "missing", NAME, metadata={})
    partial = tmp_path / "partial"
    partial.mkdir()
    for file in ("adapter_config.json", "adapter_model.safetensors"):
        (partial / file).write_bytes((trained / file).read_bytes())
    with pytest.raises(RaitError, match="no rait_train_config.json"):
        builtin.package_adapter(partial, NAME, metadata={})
    (partial / "rait_train_config.json").write_text("{}")
    config = json.loads((trained / "adapter_config.json").read_text())
    (partial / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "Qwen/Q"}))
    with pytest.raises(RaitError, match="adapts Qwen/Q; built-in model smollm2-ner-en adapts smollm2-135m"):
        builtin.package_adapter(partial, NAME, metadata={})
    with pytest.raises(RaitError, match="cannot package"):
        builtin.package_adapter(trained, NAME, metadata={"when": object()})
    (partial / "adapter_config.json").write_text(json.dumps(config))
    (partial / "adapter_model.safetensors").write_text("not safetensors")
    with pytest.raises(RaitError, match="cannot read adapter weights"):
        builtin.package_adapter(partial, NAME, metadata={})
    assert not root.exists() or list(root.iterdir()) == []  # nothing half-written
    builtin.package_adapter(trained, NAME, metadata={})
    with pytest.raises(RaitError, match="already packaged"):
        builtin.package_adapter(trained, NAME, metadata={})
    with pytest.raises(RaitError, match="unknown built-in model"):
        builtin.package_adapter(trained, "other", metadata={})


def test_from_pretrained_without_a_model_is_the_builtin(trained, packaged):
    adapted = logits(models.load_model(str(trained), device="cpu")[0])
    base = logits(tiny_model_and_tokenizer()[0])
    ner = NER.from_pretrained(device="cpu", precision="fp32")
    assert ner.predictor.system_prompt == PROMPT
    shipped = logits(ner.predictor.model)
    assert (shipped - adapted).abs().max() < 0.05 * (base - adapted).abs().max()  # bf16 rounding only
    by_name = NER.from_pretrained(NAME, device="cpu", precision="fp32")
    assert by_name.predictor.system_prompt == PROMPT and torch.equal(logits(by_name.predictor.model), shipped)
    untuned = NER.from_pretrained("smollm2-135m", device="cpu", precision="fp32")
    assert untuned.predictor.system_prompt == "none" and torch.equal(logits(untuned.predictor.model), base)
    assert ner.predict_entities("Barack Obama was born in Honolulu.", ["person"]) is not None


def test_a_builtin_packaged_with_settings_and_a_pool_loads_them(trained, root, tmp_path, monkeypatch, capsys):
    from rait.records import Mention, Record
    from rait.retrieval import ExamplePool, get_embedder

    records = [
        Record(f"p{i}", f"{name} lives in Paris.", [Mention(name, "person")]) for i, name in enumerate("AB")
    ]
    pool = ExamplePool(records, get_embedder("hashing"), show_progress=False)
    settings = {
        "threshold": 0.5,
        "examples": "pool",
        "pool": {"mode": "in-domain", "k": 1, "bm25_threshold": 0},
    }
    target = builtin.package_adapter(trained, NAME, metadata={}, settings=settings, pool=pool)
    info = builtin.builtin_info(NAME)
    assert {"rait_config.json", "pool.jsonl", "pool_vectors.npy"} <= set(info["files"])
    builtin.package_adapter(trained, NAME, metadata={}, settings=settings, pool=pool, overwrite=True)
    assert builtin.builtin_info(NAME) == info  # the same bytes again
    assert json.loads((target / "rait_config.json").read_text())["pool"]["size"] == 2
    ner = NER.from_pretrained(device="cpu", precision="fp32", max_new_tokens=4)
    assert (ner.threshold, ner.examples, ner.pool_mode, ner.k) == (0.5, "pool", "in-domain", 1)
    assert [r.id for r in ner.pool.records] == ["p0", "p1"]
    assert ner.extract(["C lives in Paris."], ["person"])[0].n_examples == 1
    plain = NER.from_pretrained(NAME, device="cpu", precision="fp32", examples="none", threshold=0.9)
    assert (plain.examples, plain.threshold) == ("none", 0.9)
    passages = tmp_path / "passages.txt"
    passages.write_text("Barack Obama was born in Honolulu.\n")
    args = ("-i", passages, "--types", "person", "--max-new-tokens", "4", "--precision", "fp32", "-q")
    code, output = run_cli(
        monkeypatch, capsys, "predict", *args, "--embedder", "hashing", "-o", tmp_path / "p.jsonl"
    )
    assert code == 0, output
    meta = json.loads((tmp_path / "p.meta.json").read_text())["settings"]
    assert (meta["threshold"], meta["examples"], meta["k"]) == (0.5, "in-domain", 1)  # the model's own mode
    assert Path(meta["pool"]).name == "pool.jsonl"
    assert "1 had examples" in output
    code, output = run_cli(
        monkeypatch, capsys, "predict", *args, "--examples", "none", "-o", tmp_path / "n.jsonl"
    )
    assert code == 0, output
    assert json.loads((tmp_path / "n.meta.json").read_text())["settings"]["examples"] == "none"
    if importlib.util.find_spec("fastapi"):
        served = {}
        monkeypatch.setattr("rait.serve.run_server", lambda ner, **kwargs: served.update(ner=ner, **kwargs))
        assert run_cli(monkeypatch, capsys, "serve", "--precision", "fp32")[0] == 0
        assert (served["ner"].threshold, served["ner"].examples) == (0.5, "pool")
        assert served["info"]["pool"] == "the model's own"


def test_without_a_packaged_model_the_default_stays_untuned(root):
    assert not builtin.is_packaged(NAME) and builtin.default_model(None) is None
    ner = NER.from_pretrained(device="cpu", precision="fp32")
    assert ner.predictor.system_prompt == "none"
    assert torch.equal(logits(ner.predictor.model), logits(tiny_model_and_tokenizer()[0]))
    with pytest.raises(RaitError, match="built-in model smollm2-ner-en is not packaged"):
        NER.from_pretrained(NAME)


def test_default_model_only_when_nothing_is_given(packaged):
    assert builtin.default_model(None) == NAME
    assert builtin.default_model(None, "adapter-dir") is None
    assert builtin.default_model("smollm2-135m") == "smollm2-135m"
    assert builtin.resolve_builtin(NAME) == str(packaged) and builtin.resolve_builtin("x/y") == "x/y"


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    from rait.cli import main

    monkeypatch.setattr(sys, "argv", ["rait", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "400")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out + out.err


def test_predict_uses_the_builtin_unless_given_a_model(packaged, tmp_path, monkeypatch, capsys):
    passages = tmp_path / "passages.txt"
    passages.write_text("Barack Obama was born in Honolulu.\n")
    common = ("-i", passages, "--types", "person", "--max-new-tokens", "4", "--precision", "fp32", "-q")
    code, output = run_cli(monkeypatch, capsys, "predict", *common, "-o", tmp_path / "builtin.jsonl")
    assert code == 0, output
    meta = json.loads((tmp_path / "builtin.meta.json").read_text())["settings"]
    assert meta["model"] == NAME and meta["system_prompt"] == PROMPT
    code, output = run_cli(
        monkeypatch, capsys, "predict", "-m", "smollm2-135m", *common, "-o", tmp_path / "b.jsonl"
    )
    assert code == 0, output
    meta = json.loads((tmp_path / "b.meta.json").read_text())["settings"]
    assert meta["model"] == "smollm2-135m" and meta["system_prompt"] == "none"


def test_predict_names_a_builtin_that_is_not_packaged(root, tmp_path, monkeypatch, capsys):
    passages = tmp_path / "passages.txt"
    passages.write_text("Barack Obama was born in Honolulu.\n")
    code, output = run_cli(
        monkeypatch,
        capsys,
        "predict",
        "-m",
        NAME,
        "-i",
        passages,
        "--types",
        "person",
        "-o",
        tmp_path / "p.jsonl",
    )
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "smollm2-ner-en is not packaged" in lines[0], output


@pytest.mark.parametrize(
    ("args", "model", "prompt"), [([], NAME, PROMPT), (["smollm2-135m"], "smollm2-135m", "none")]
)
def test_serve_uses_the_builtin_unless_given_a_model(packaged, monkeypatch, capsys, args, model, prompt):
    pytest.importorskip("fastapi")
    served = {}
    monkeypatch.setattr("rait.serve.run_server", lambda ner, **kwargs: served.update(ner=ner, **kwargs))
    code, output = run_cli(monkeypatch, capsys, "serve", *args, "--precision", "fp32")
    assert code == 0, output
    assert served["info"]["model"] == model and served["ner"].predictor.system_prompt == prompt


def ship_script():
    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ship_script_packages_and_drafts_a_card(trained, root, tmp_path, capsys):
    ship = ship_script()
    selection = tmp_path / "selection.json"
    selection.write_text('{"rule": "best mean F1", "cell": "n500-ra_it"}')
    card = tmp_path / "card.md"
    args = [str(trained), "--name", NAME, "--selection", str(selection), "--scores", '{"f1": 40.1}']
    assert ship.main([*args, "--card", str(card)]) == 0
    info = builtin.builtin_info()
    assert info["metadata"] == {
        "source": str(trained),
        "selection": {"rule": "best mean F1", "cell": "n500-ra_it"},
        "scores": {"f1": 40.1},
    }
    text = card.read_text()
    assert text.startswith("# smollm2-ner-en\n") and "rank 4, alpha 8" in text and '"best mean F1"' in text
    assert f'| system_prompt | `"{PROMPT}"` |' in text and "| adapter_model.safetensors |" in text
    capsys.readouterr()
    assert ship.main([*args, "--card", str(card)]) == 1
    assert capsys.readouterr().err == f"error: {card} exists; pass --overwrite to replace it\n"
    assert ship.main([*args, "--card", str(card), "--overwrite"]) == 0
    capsys.readouterr()
    assert ship.main([str(trained), "--scores", "{f1: 40}", "--overwrite"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: {f1: 40}: not JSON"), err
