"""Choosing the shipped model across a study's cells (rait.experiment.choice): the common hold-out, the
hold-out loss (a real tiny model), the choice, the shipped model's scores, and scripts/ship_model.py
--experiment."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from rait import builtin
from rait.errors import RaitError
from rait.experiment import Stages, choice, load_config, run_experiment, run_train
from rait.experiment.choice import common_holdout, compare_models, holdout_loss, shipped_scores
from rait.records import Conversation, Turn
from rait.report import load_results
from rait.testing import save_tiny_model, tiny_model_and_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
name: choice
model: {model}
output_dir: {out}
training:
  source: fake-source
  sizes: [10, 20]
  methods: [vanilla, ra-it]
  seeds: [1, 2]
  hyper:
    validation_fraction: 0.2
evaluation:
  benchmarks: [crossner_ai]
  base: false
"""
POOL = 80  # passages p0..p79; a cell (size, seed) trains on a seeded sample of them
TYPES = ["person", "location"]


def passage_ids(size: int, seed: int) -> list[str]:
    return [f"p{i}" for i in sorted(random.Random(seed).sample(range(POOL), size))]


def vanilla_turns(pid: str) -> list[Turn]:
    n = int(pid[1:])
    return [
        Turn("user", f"Text: Barack Obama met person {n} in Paris."),
        Turn("assistant", "I've read this text."),
        Turn("user", f"What describes {TYPES[n % 2]} in the text?"),
        Turn("assistant", '["Barack Obama"]' if n % 2 == 0 else '["Paris"]'),
    ]


def conversation(pid: str, method: str) -> Conversation:
    turns = vanilla_turns(pid)
    if method == "ra-it":  # the examples turn and its trivially predictable answer, as rait.build_data
        examples = (
            "Here are some examples of named entity recognition:\nText: Paris.\nEntity: [{'Paris': 'x'}]"
        )
        turns = [Turn("user", examples), Turn("assistant", "I've read these examples."), *turns]
    return Conversation(pid, turns)


class FakeStages:
    """Builds fake conversation files (the same passage ids for vanilla and RA-IT of a size and seed);
    training writes a marker directory, or runs ``train`` when given."""

    def __init__(self, train=None):
        self.real_train = train

    def build(self, config, cell, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [conversation(p, cell.method).to_sharegpt() for p in passage_ids(cell.size, cell.seed)]
        (out_dir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return out_dir / "train.jsonl"

    def train(self, config, cell, data: Path, out_dir: Path) -> Path:
        if self.real_train:
            return self.real_train(config, cell, data, out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_summary.json").write_text(json.dumps({"validation": {"best_eval_loss": 0.25}}))
        return out_dir

    def predict(self, config, cell, model, out_dir: Path) -> Path:
        (out_dir / "predictions.jsonl").write_text("")
        return out_dir / "predictions.jsonl"

    def evaluate(self, config, cell, predictions: Path) -> dict:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "n_queries": 1, "n_unparseable": 0}

    def stages(self) -> Stages:
        return Stages(self.build, self.train, self.predict, self.evaluate, lambda path: None)


def make_config(tmp_path: Path, model: str = "fake-model", **replace: str):
    text = CONFIG.format(model=model, out=tmp_path / "out")
    for old, new in replace.items():
        text = text.replace(old, new)
    (tmp_path / "choice.yaml").write_text(text)
    return load_config(tmp_path / "choice.yaml")


def trained_ids(size: int, seed: int, fraction: float = 0.2) -> set[str]:
    """The trainer's split written out independently: a seeded sample of indices is held out."""
    ids = passage_ids(size, seed)
    held = set(random.Random(seed).sample(range(size), max(1, round(fraction * size))))
    return {pid for i, pid in enumerate(ids) if i not in held}


@pytest.fixture
def study(tmp_path):
    config = make_config(tmp_path)
    run_experiment(config, stages=FakeStages().stages())
    return config


CELLS = [(10, 1), (10, 2), (20, 1), (20, 2)]


def test_common_holdout_excludes_every_trained_passage_in_the_vanilla_format(study):
    held = common_holdout(study)
    trained = set().union(*(trained_ids(size, seed) for size, seed in CELLS))
    # the vanilla data's passages, the largest cells first, each once, minus every trained passage
    order = [p for size, seed in [(20, 1), (20, 2), (10, 1), (10, 2)] for p in passage_ids(size, seed)]
    expected = [p for p in dict.fromkeys(order) if p not in trained]
    assert [c.id for c in held] == expected and held
    assert all(c.turns == vanilla_turns(c.id) for c in held)  # no examples turn
    assert common_holdout(load_config(study.path)) == held  # deterministic


def test_cells_restrict_the_exclusion_and_unbuilt_data_is_an_error(study):
    marker = study.output_dir / "data" / "n20-ra-it-nn-k2-s2" / "DONE.json"
    marker.unlink()
    with pytest.raises(RaitError, match="data of cell n20-ra-it-nn-k2-s2 is not built yet.*cells="):
        common_holdout(study)
    cells = ["n10-vanilla-s1", "n10-ra-it-nn-k2-s1"]
    held = {c.id for c in common_holdout(study, cells)}
    pool = set().union(*(passage_ids(size, seed) for size, seed in CELLS))
    assert held == pool - trained_ids(10, 1)
    with pytest.raises(RaitError, match="no training cell n10-vanilla-s9 in the config"):
        common_holdout(study, ["n10-vanilla-s9"])


def test_holdout_needs_vanilla_data_and_held_out_passages(tmp_path):
    ra_it = make_config(tmp_path, **{"methods: [vanilla, ra-it]": "methods: [ra-it]"})
    run_experiment(ra_it, stages=FakeStages().stages())
    with pytest.raises(RaitError, match="no vanilla cell's data is built"):
        common_holdout(ra_it)
    shutil.rmtree(ra_it.output_dir)
    nothing_held = make_config(tmp_path, **{"validation_fraction: 0.2": "validation_fraction: 0"})
    run_experiment(nothing_held, stages=FakeStages().stages())
    with pytest.raises(RaitError, match="common hold-out is empty"):
        common_holdout(nothing_held)


def test_the_lowest_holdout_loss_is_chosen(study, monkeypatch):
    """FABRICATED losses (the real loss is tested below): the choice follows them, ties go to the first."""
    losses = {"n10-vanilla-s1": 0.9, "n10-vanilla-s2": 0.5, "n10-ra-it-nn-k2-s1": 0.7}
    losses |= {
        "n10-ra-it-nn-k2-s2": 0.5,
        "n20-vanilla-s1": 0.8,
        "n20-vanilla-s2": 0.6,
        "n20-ra-it-nn-k2-s1": 0.6,
    }
    seen = []

    def fake_loss(path, conversations, precision):
        seen.append(len(conversations))
        return {
            "loss": losses[Path(path).name],
            "conversations": len(conversations),
            "examples": 1,
            "tokens": 3,
        }

    monkeypatch.setattr(choice, "holdout_loss", fake_loss)
    (study.output_dir / "train" / "n20-ra-it-nn-k2-s2" / "DONE.json").unlink()
    result = compare_models(study, max_conversations=2)
    assert [row["cell"] for row in result["rows"]] == list(losses)
    assert result["chosen"] == "n10-vanilla-s2" and result["chosen_path"] == "train/n10-vanilla-s2"
    assert result["not_compared"] == {"n20-ra-it-nn-k2-s2": "todo"}
    assert (
        result["holdout"]["passages"]
        == len(common_holdout(study))
        > 2
        == result["holdout"]["conversations_scored"]
    )
    assert seen == [2] * 7
    row = result["rows"][0]
    assert row["selected"] == {"learning_rate": 5e-5, "epochs": 3.0} and row["holdout_loss"] == 0.9
    assert row["validation_loss"] == 0.25
    losses["n20-vanilla-s1"] = 0.1
    assert compare_models(study, ["n10-vanilla-s2", "n20-vanilla-s1"])["chosen"] == "n20-vanilla-s1"
    with pytest.raises(RaitError, match="model of cell n20-ra-it-nn-k2-s2 has not finished"):
        compare_models(study, ["n20-ra-it-nn-k2-s2"])
    with pytest.raises(RaitError, match="max_conversations must be at least 1"):
        compare_models(study, max_conversations=0)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("choice") / "base")


def test_holdout_loss_is_the_token_weighted_assistant_loss(tiny_base, tmp_path):
    """A LoRA adapter of zero effect: its hold-out loss is the base model's loss as transformers computes it
    (labels on assistant tokens only), weighted by tokens over the set."""
    model, tokenizer = tiny_model_and_tokenizer()
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    lora.peft_config["default"].base_model_name_or_path = str(tiny_base)
    lora.save_pretrained(tmp_path / "run")
    tokenizer.save_pretrained(tmp_path / "run")
    (tmp_path / "run" / "rait_train_config.json").write_text(json.dumps({"system_prompt": "Be brief."}))
    conversations = [conversation("p3", "vanilla"), conversation("p8", "vanilla")]
    scored = holdout_loss(tmp_path / "run", conversations, precision="fp32")

    from rait.chat import IGNORE_INDEX, encode_for_training

    total, tokens = 0.0, 0
    for c in conversations:
        encoded = encode_for_training(tokenizer, c.turns, system_prompt="Be brief.")
        n = sum(x != IGNORE_INDEX for x in encoded["labels"][1:])
        with torch.no_grad():
            out = model(torch.tensor([encoded["input_ids"]]), labels=torch.tensor([encoded["labels"]]))
        total, tokens = total + out.loss.item() * n, tokens + n
    assert scored == {
        "loss": pytest.approx(total / tokens, rel=1e-5),
        "conversations": 2,
        "examples": 2,
        "tokens": tokens,
    }
    (tmp_path / "run" / "rait_train_config.json").unlink()
    with pytest.raises(RaitError, match="not a rait training run"):
        holdout_loss(tmp_path / "run", conversations)


def ship_script():
    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_scores_are_the_builtin_models_scores():
    """The shipped model's selection metadata is the study's final comparison (results/powered/choice.json),
    and its scores come back from the study's results: F1 per decoding with the report's bootstrap intervals,
    rounded to 2 decimals, for the cell that comparison chose."""
    config = load_config(ROOT / "configs" / "experiments" / "cpu_en_powered.yaml")
    results = load_results(ROOT / "results" / "powered" / "results.json")
    expected = json.loads((ROOT / "results" / "powered" / "builtin_scores.json").read_text())
    metadata = builtin.builtin_info()["metadata"]
    assert metadata["selection"] == json.loads((ROOT / "results" / "powered" / "choice.json").read_text())
    assert metadata["scores"] == expected
    assert shipped_scores(config, metadata["selection"]["chosen"], results) == expected
    assert list(expected["f1"]) == ["free decoding", "constrained decoding", "constrained-words decoding"]


def test_shipped_scores_without_counts_or_finished_cells(study):
    """FABRICATED scores (FakeStages scores every cell 1.0, without per-sentence counts)."""
    assert shipped_scores(study, "n10-vanilla-s1") == {
        "experiment": "choice",
        "test_sentences_per_benchmark": study.evaluation.max_examples,
        "protocol": study.evaluation.protocol,
        "interval": "unavailable: the results have no per-sentence counts",
        "f1": {"free decoding": {"crossner_ai": {"f1": 1.0}, "average": {"f1": 1.0}}},
    }
    assert shipped_scores(study, "n10-vanilla-s9") is None  # no such cell: no rows
    (study.output_dir / "eval" / "n10-vanilla-s1" / "none" / "crossner_ai" / "DONE.json").unlink()
    assert shipped_scores(study, "n10-vanilla-s1") is None


def test_ship_script_fills_the_scores_from_the_experiment(study, tmp_path, monkeypatch, capsys):
    """FABRICATED hold-out losses choose n20-vanilla-s2; the packaged metadata gets its scores, none once its
    eval cell is undone, and --scores wins."""
    monkeypatch.setattr(
        choice,
        "holdout_loss",
        lambda path, conversations, precision: {
            "loss": 0.1 if Path(path).name == "n20-vanilla-s2" else 0.9,
            "conversations": 1,
            "examples": 1,
            "tokens": 1,
        },
    )
    monkeypatch.setattr(builtin, "MODELS_ROOT", tmp_path / "models")
    ship, packaged = ship_script(), []
    monkeypatch.setattr(
        ship, "package_adapter", lambda adapter_dir, name, metadata, **options: packaged.append(metadata)
    )
    args = ["--experiment", str(study.path), "--output", str(tmp_path / "choice.json")]
    assert ship.main(args) == 0
    expected = shipped_scores(study, "n20-vanilla-s2")
    assert expected is not None and packaged[-1]["scores"] == expected
    assert (
        "scores: n20-vanilla-s2's finished eval cells without examples (free decoding)"
        in capsys.readouterr().out
    )
    (study.output_dir / "eval" / "n20-vanilla-s2" / "none" / "crossner_ai" / "DONE.json").unlink()
    assert ship.main(args) == 0
    assert "scores" not in packaged[-1]
    assert (
        "no finished eval cell of n20-vanilla-s2 without examples: packaging without scores"
        in capsys.readouterr().out
    )
    assert ship.main([*args, "--scores", '{"f1": 40.1}']) == 0
    assert packaged[-1]["scores"] == {"f1": 40.1}


@pytest.mark.slow
def test_a_trained_model_beats_an_untrained_one_and_is_shipped(tiny_base, tmp_path, monkeypatch, capsys):
    """Real training of the tiny model: the RA-IT cell (later in plan order) learns, the vanilla cell barely
    moves; the real hold-out loss chooses the RA-IT model, and ship_model.py --experiment packages it."""
    options = (
        "validation_fraction: 0.2",
        "max_steps: 40",
        "batch_size: 2",
        "save_steps: 20",
        "precision: fp32",
    )
    hyper = "\n    ".join(options)
    config = make_config(
        tmp_path,
        str(tiny_base),
        **{
            "sizes: [10, 20]": "sizes: [10]",
            "seeds: [1, 2]": "seeds: [1]",
            "validation_fraction: 0.2": hyper,
        },
    )

    def train(cfg, cell, data, out_dir):
        rate = 1e-2 if cell.method == "ra-it" else 1e-9
        spec = dataclasses.replace(cfg.training, hyper={**cfg.training.hyper, "learning_rate": rate})
        return run_train(dataclasses.replace(cfg, training=spec), cell, data, out_dir)

    run_experiment(config, stages=FakeStages(train).stages())
    result = compare_models(config, precision="fp32")
    losses = {row["cell"]: row["holdout_loss"] for row in result["rows"]}
    assert list(losses) == ["n10-vanilla-s1", "n10-ra-it-nn-k2-s1"]
    assert losses["n10-ra-it-nn-k2-s1"] < losses["n10-vanilla-s1"] - 0.5, losses
    assert result["chosen"] == "n10-ra-it-nn-k2-s1" and result["holdout"]["passages"] == 2
    assert all(row["tokens"] > 0 and row["validation_loss"] > 0 for row in result["rows"])

    monkeypatch.setattr(builtin, "MODELS_ROOT", tmp_path / "models")
    output = tmp_path / "results" / "choice.json"
    args = ["--experiment", str(config.path), "--output", str(output), "--precision", "fp32"]
    assert ship_script().main(args) == 0
    printed = capsys.readouterr().out
    assert "n10-ra-it-nn-k2-s1" in printed and "chosen: n10-ra-it-nn-k2-s1" in printed
    written = json.loads(output.read_text())
    assert written["chosen"] == "n10-ra-it-nn-k2-s1"
    assert builtin.builtin_info()["metadata"]["selection"] == written
    assert ship_script().main(args) == 1
    assert "already packaged; pass --overwrite" in capsys.readouterr().err
