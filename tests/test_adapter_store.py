"""The adapter store: trained adapters exported in bf16, restored instead of training when the key matches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from rait.cli import app
from rait.data.formats import write_records
from rait.experiment import Stages, load_config, plan, run_experiment
from rait.experiment.adapters import STORED_FILE, export_adapters, run_key
from rait.experiment.stages import run_build, run_train
from rait.records import Mention, Record
from rait.testing import save_tiny_model

TEXTS = [
    ("Alice Smith joined Acme Corp in Paris", [("Alice Smith", "person"), ("Acme Corp", "company")]),
    ("Bob Jones flew to Berlin", [("Bob Jones", "person"), ("Berlin", "city")]),
    ("The Nile flows through Egypt", [("Nile", "river"), ("Egypt", "country")]),
    ("Mozart lived in Vienna", [("Mozart", "composer"), ("Vienna", "city")]),
]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    records = [
        Record(f"d{i}", text, [Mention(m, t, text.index(m), text.index(m) + len(m)) for m, t in mentions])
        for i, (text, mentions) in enumerate(TEXTS)
    ]
    write_records(records, root / "source.jsonl", "rait")
    model = save_tiny_model(root / "model")
    text = f"""\
name: store
lang: en
model: {model}
adapters: {root / "adapters"}
training:
  source: {root / "source.jsonl"}
  sizes: [4]
  methods: [vanilla]
  hyper: {{max_steps: 2, batch_size: 2, per_device_batch_size: 1, learning_rate: 1.0e-2, lora_r: 2,
          lora_alpha: 4, precision: fp32, save_steps: 1, logging_steps: 1}}
  recipes:
    full: {{hyper: {{finetuning: full}}}}
  extra_grids:
    - {{recipes: [full]}}
evaluation:
  benchmarks: [crossner_ai]
  base: false
"""
    (root / "store.yaml").write_text(text)
    return root


def fake_eval(calls):
    def predict(config, cell, model, out_dir):
        calls.append(cell.name)
        path = out_dir / "predictions.jsonl"
        path.write_text("")
        return path

    def evaluate(config, cell, predictions):
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n_queries": 0, "n_unparseable": 0}

    return predict, evaluate


def test_trained_adapters_are_stored_in_bf16_and_restored_instead_of_training(experiment, monkeypatch):
    monkeypatch.setenv("RAIT_CACHE_DIR", str(experiment / "cache"))
    trained = []

    def train(config, cell, data, out_dir):
        trained.append(cell.name)
        return run_train(config, cell, data, out_dir)

    config = load_config(experiment / "store.yaml", output_dir=experiment / "first")
    run_experiment(config, stages=Stages(run_build, train, *fake_eval([])))
    assert trained == ["n4-vanilla-s42", "n4-vanilla-s42-full"]
    entry = experiment / "adapters" / "store" / "n4-vanilla-s42"
    stored = json.loads((entry / STORED_FILE).read_text())
    run = experiment / "first" / "train" / "n4-vanilla-s42"
    assert stored["key"] == run_key(run)
    assert set(stored["files"]) == {
        "adapter_model.safetensors",
        "adapter_config.json",
        "rait_train_config.json",
        "train_summary.json",
        "train_log.jsonl",
        "tokenizer.json",  # the base is a local model here: the run's tokenizer files too
        "tokenizer_config.json",
        "chat_template.jinja",
    }
    weights = load_file(entry / "adapter_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert not (experiment / "adapters" / "store" / "n4-vanilla-s42-full").exists()  # full: not stored

    trained.clear()  # a fresh machine: another output directory, the same store
    again = load_config(experiment / "store.yaml", output_dir=experiment / "second")
    run_experiment(again, stages=Stages(run_build, train, *fake_eval([])))
    assert trained == ["n4-vanilla-s42-full"]  # the LoRA run came from the store
    restored = experiment / "second" / "train" / "n4-vanilla-s42"
    assert (restored / "adapter_model.safetensors").read_bytes() == (
        entry / "adapter_model.safetensors"
    ).read_bytes()
    assert all(step.status() == "done" for step in plan(again))

    trained.clear()  # another experiment with the same training: restored from the first one's entry
    (experiment / "renamed.yaml").write_text(
        (experiment / "store.yaml").read_text().replace("name: store", "name: renamed")
    )
    renamed = load_config(experiment / "renamed.yaml", output_dir=experiment / "fourth")
    run_experiment(renamed, stages=Stages(run_build, train, *fake_eval([])))
    assert trained == ["n4-vanilla-s42-full"]
    copy = experiment / "adapters" / "renamed" / "n4-vanilla-s42" / "adapter_model.safetensors"
    assert copy.read_bytes() == (entry / "adapter_model.safetensors").read_bytes()  # the same git blob

    trained.clear()  # other settings: the stored adapter does not match, the cell trains
    text = (experiment / "store.yaml").read_text().replace("learning_rate: 1.0e-2", "learning_rate: 2.0e-2")
    (experiment / "other.yaml").write_text(text)
    other = load_config(experiment / "other.yaml", output_dir=experiment / "third")
    run_experiment(other, stages=Stages(run_build, train, *fake_eval([])))
    assert trained == ["n4-vanilla-s42", "n4-vanilla-s42-full"]
    assert json.loads((entry / STORED_FILE).read_text())["key"] == run_key(
        experiment / "third" / "train" / "n4-vanilla-s42"
    )


def test_export_adapters_of_a_finished_experiment(experiment, monkeypatch, tmp_path):
    monkeypatch.setenv("RAIT_CACHE_DIR", str(experiment / "cache"))
    config = load_config(experiment / "store.yaml", output_dir=experiment / "first")
    if not (experiment / "first" / "train").exists():
        run_experiment(config, stages=Stages(run_build, run_train, *fake_eval([])))
    runs = export_adapters(config, plan(config), tmp_path / "exported")
    assert [(name, stored is None) for name, _, stored in runs] == [
        ("n4-vanilla-s42", False),
        ("n4-vanilla-s42-full", True),
    ]
    result = CliRunner().invoke(
        app,
        ["experiment", str(experiment / "store.yaml"), "-o", str(experiment / "first"),
         "--export-adapters", "--adapters", str(tmp_path / "cli")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "n4-vanilla-s42-full: not stored" in result.output and "MB stored" in result.output
    assert (tmp_path / "cli" / "store" / "n4-vanilla-s42" / STORED_FILE).is_file()
