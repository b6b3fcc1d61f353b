"""Model selection in experiments (training.search): candidates, the select step, resume, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rait.errors import DataError
from rait.experiment import Stages, load_config, plan, run_experiment
from rait.experiment.selection import SearchSpec, select, validation_loss

CONFIG = """\
name: search
model: fake-model
training:
  source: fake-source
  sizes: [10]
  methods: [vanilla, ra-it]
  seeds: [1]
  hyper:
    validation_fraction: 0.1
  search:
    learning_rate: [0.001, 0.0001]
    epochs: [1, 3]
evaluation:
  benchmarks: [crossner_ai]
  base: false
"""

# FABRICATED validation losses per (method, candidate): vanilla is best at lr 1e-3 x 3 epochs, RA-IT at
# lr 1e-4 x 1 epoch; one candidate has a tie with the best of its cell and comes later (not chosen).
LOSSES = {
    "n10-vanilla-s1": {"lr0.001-ep1": 0.9, "lr0.001-ep3": 0.5, "lr0.0001-ep1": 0.8, "lr0.0001-ep3": 0.5},
    "n10-ra-it-nn-k2-s1": {"lr0.001-ep1": 0.7, "lr0.001-ep3": 0.6, "lr0.0001-ep1": 0.4, "lr0.0001-ep3": 0.9},
}
# FABRICATED losses of the cells outside search.sizes (one run each, in the cell's own directory).
DONOR_LOSSES = {"n20-vanilla-s1": 0.45, "n20-ra-it-nn-k2-s1": 0.35}


class SearchStages:
    """Stages that record which hyper-parameters each training got and which model each eval used."""

    def __init__(self):
        self.trained: list[tuple[str, float, float]] = []
        self.evaluated_with: dict[str, str] = {}

    def build(self, config, cell, out_dir: Path) -> Path:
        (out_dir / "data.jsonl").write_text(cell.name)
        return out_dir / "data.jsonl"

    def train(self, config, cell, data: Path, out_dir: Path) -> Path:
        hyper = config.training.hyper
        assert hyper["validation_fraction"] == 0.1
        self.trained.append((cell.name, hyper["learning_rate"], hyper["epochs"]))
        loss = LOSSES[cell.name][out_dir.name] if cell.name in LOSSES else DONOR_LOSSES[out_dir.name]
        (out_dir / "loss.json").write_text(json.dumps(loss))
        return out_dir

    def predict(self, config, cell, model: Path | None, out_dir: Path) -> Path:
        self.evaluated_with[cell.train.name] = model.name
        (out_dir / "predictions.jsonl").write_text("")
        return out_dir / "predictions.jsonl"

    def evaluate(self, config, cell, predictions: Path) -> dict:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "n_queries": 1, "n_unparseable": 0}

    @staticmethod
    def loss(model_dir: Path) -> float:
        return json.loads((model_dir / "loss.json").read_text())

    def stages(self) -> Stages:
        return Stages(self.build, self.train, self.predict, self.evaluate, self.loss)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text(CONFIG)
    return load_config(path, output_dir=tmp_path / "out")


def test_search_trains_every_candidate_and_evaluates_the_lowest_validation_loss(config):
    assert config.training.search == SearchSpec((0.001, 0.0001), (1.0, 3.0))
    fake = SearchStages()
    results = run_experiment(config, stages=fake.stages())
    assert sorted(fake.trained) == sorted(
        (cell, lr, ep) for cell in LOSSES for lr in (0.001, 0.0001) for ep in (1.0, 3.0)
    )
    assert fake.evaluated_with == {"n10-vanilla-s1": "lr0.001-ep3", "n10-ra-it-nn-k2-s1": "lr0.0001-ep1"}
    chosen = results["selection"]["n10-vanilla-s1"]
    assert chosen["selected"] == {"learning_rate": 0.001, "epochs": 3.0}
    assert [c["validation_loss"] for c in chosen["candidates"]] == [0.9, 0.5, 0.8, 0.5]
    assert chosen["candidates"][1]["path"] == "train/n10-vanilla-s1/search/lr0.001-ep3"
    assert results["selection"]["n10-ra-it-nn-k2-s1"]["selected"] == {"learning_rate": 0.0001, "epochs": 1.0}

    again = SearchStages()
    assert run_experiment(config, stages=again.stages()) == results
    assert again.trained == [] and again.evaluated_with == {}


def test_steps_and_staleness(config, tmp_path):
    steps = plan(config, SearchStages().stages())
    stages = [(s.stage, s.name) for s in steps]
    assert stages[:6] == [
        ("build", "n10-vanilla-s1"),
        ("train", "n10-vanilla-s1/lr0.001-ep1"),
        ("train", "n10-vanilla-s1/lr0.001-ep3"),
        ("train", "n10-vanilla-s1/lr0.0001-ep1"),
        ("train", "n10-vanilla-s1/lr0.0001-ep3"),
        ("select", "n10-vanilla-s1"),
    ]
    run_experiment(config, stages=SearchStages().stages())
    # another search space makes the selection, and the evaluations on it, stale; the candidates stay done
    path = tmp_path / "wider.yaml"
    path.write_text(CONFIG.replace("epochs: [1, 3]", "epochs: [1, 3, 5]"))
    wider = load_config(path, output_dir=config.output_dir)
    status = {(s.stage, s.name): s.status() for s in plan(wider, SearchStages().stages())}
    assert status[("train", "n10-vanilla-s1/lr0.001-ep3")] == "done"
    assert status[("train", "n10-vanilla-s1/lr0.001-ep5")] == "todo"
    assert status[("select", "n10-vanilla-s1")] == "stale"
    assert status[("eval", "n10-vanilla-s1/none/crossner_ai")] == "stale"


def _sized_config(tmp_path, search_sizes: str = "[10]"):
    path = tmp_path / "sizes.yaml"
    text = CONFIG.replace("sizes: [10]", "sizes: [10, 20]")
    path.write_text(text.replace("epochs: [1, 3]", f"epochs: [1, 3]\n    sizes: {search_sizes}"))
    return load_config(path, output_dir=tmp_path / "out")


def test_search_sizes_train_other_sizes_once_with_their_donors_choice(tmp_path):
    config = _sized_config(tmp_path)
    assert config.training.search.sizes == (10,)
    fake = SearchStages()
    results = run_experiment(config, stages=fake.stages())
    donors = [t for t in fake.trained if t[0].startswith("n20")]
    assert donors == [("n20-vanilla-s1", 0.001, 3.0), ("n20-ra-it-nn-k2-s1", 0.0001, 1.0)]
    assert len(fake.trained) == 8 + 2
    assert fake.evaluated_with["n20-vanilla-s1"] == "n20-vanilla-s1"
    assert results["selection"]["n20-vanilla-s1"] == {
        "selected": {"learning_rate": 0.001, "epochs": 3.0},
        "selected_by": "n10-vanilla-s1",
        "candidates": [
            {"learning_rate": 0.001, "epochs": 3.0, "validation_loss": 0.45, "path": "train/n20-vanilla-s1"}
        ],
    }
    # the donor's search space is a setting of the cells that take its choice
    wider = _sized_config(tmp_path).training
    wider.search = SearchSpec((0.001, 0.0001, 0.01), (1.0, 3.0), (10,))
    config.training = wider
    status = {(s.stage, s.name): s.status() for s in plan(config, SearchStages().stages())}
    assert status[("train", "n20-vanilla-s1")] == "stale"


def test_search_sizes_config_errors(tmp_path):
    with pytest.raises(DataError, match=r"training.search.sizes\[0\].*15 is not a training size"):
        _sized_config(tmp_path, "[15]")
    path = tmp_path / "extra.yaml"
    text = CONFIG.replace("epochs: [1, 3]", "epochs: [1, 3]\n    sizes: [10]")
    extra = "  seeds: [1]\n  extra_grids:\n    - {sizes: [20], methods: [ra-it], strategies: [random]}"
    path.write_text(text.replace("  seeds: [1]", extra))
    with pytest.raises(DataError, match="n20-ra-it-random-k2-s1 takes its hyper-parameters from n10-ra-it"):
        load_config(path)


def test_select_needs_a_scored_candidate(tmp_path):
    assert select([({"learning_rate": 1.0}, tmp_path)], lambda path: 0.3)[0] == 0
    with pytest.raises(ValueError, match="no search candidate has a validation loss"):
        select([({"learning_rate": 1.0}, tmp_path)], lambda path: None)


def test_validation_loss_reads_the_training_summary(tmp_path):
    (tmp_path / "train_summary.json").write_text(json.dumps({"validation": {"best_eval_loss": 1.25}}))
    assert validation_loss(tmp_path) == 1.25
    (tmp_path / "train_summary.json").write_text(json.dumps({"validation": None}))
    assert validation_loss(tmp_path) is None


@pytest.mark.parametrize(
    ("old", "new", "key", "line", "message"),
    [
        ("validation_fraction: 0.1", "validation_fraction: 0", "training.search", 10, "validation_fraction"),
        (
            "validation_fraction: 0.1",
            "validation_fraction: 0.1\n    learning_rate: 0.1",
            "training.hyper.learning_rate",
            10,
            "set by training.search",
        ),
        (
            "validation_fraction: 0.1",
            "validation_fraction: 0.1\n    max_steps: 5",
            "training.hyper.max_steps",
            10,
            "overrides the searched",
        ),
        ("epochs: [1, 3]", "epochs: [1, -3]", "training.search.epochs[1]", 12, "positive number"),
        ("epochs: [1, 3]", "epoch: [1, 3]", "training.search.epoch", 12, "unknown key"),
    ],
)
def test_search_config_errors_name_the_key(tmp_path, old, new, key, line, message):
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.replace(old, new))
    with pytest.raises(DataError) as info:
        load_config(path)
    assert (info.value.field, info.value.line) == (key, line) and message in str(info.value)


@pytest.mark.slow
def test_search_through_the_real_training_with_a_tiny_model(tmp_path, monkeypatch):
    """smoke.yaml's vanilla cell with a two-candidate search: real training with a validation hold-out."""
    import yaml

    from rait.testing import save_tiny_model

    repo = Path(__file__).parents[1]
    monkeypatch.chdir(repo)
    data = yaml.safe_load((repo / "configs" / "experiments" / "smoke.yaml").read_text())
    data["model"] = str(save_tiny_model(tmp_path / "tiny"))
    data["training"]["methods"] = ["vanilla"]
    hyper = data["training"]["hyper"]
    for name in ("max_steps", "learning_rate"):
        del hyper[name]
    hyper.update(validation_fraction=0.25, save_steps=1)
    data["training"]["search"] = {"learning_rate": [1e-2, 1e-6], "epochs": [1]}
    data["evaluation"].update(base=False, modes=["none"], max_examples=2)
    data["evaluation"]["predict"]["max_new_tokens"] = 2
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(data))
    results = run_experiment(load_config(path, output_dir=tmp_path / "out"))
    chosen = results["selection"]["n20-vanilla-s42"]
    losses = [c["validation_loss"] for c in chosen["candidates"]]
    assert all(isinstance(loss, float) for loss in losses)
    assert chosen["selected"]["learning_rate"] == [1e-2, 1e-6][losses.index(min(losses))]
    assert results["complete"] and len(results["rows"]) == 1


def test_checkpoint_cadence_counts_as_a_setting_with_a_validation_hold_out(config, tmp_path):
    """save_steps is where validation picks the kept checkpoint: changing it makes the models stale."""
    run_experiment(config, stages=SearchStages().stages())
    for text, expected in (("save_steps: 7", "stale"), ("logging_steps: 7", "done")):
        path = tmp_path / "cadence.yaml"
        path.write_text(CONFIG.replace("validation_fraction: 0.1", f"validation_fraction: 0.1\n    {text}"))
        edited = load_config(path, output_dir=config.output_dir)
        status = {(s.stage, s.name): s.status() for s in plan(edited, SearchStages().stages())}
        assert status[("train", "n10-vanilla-s1/lr0.001-ep3")] == expected, text
