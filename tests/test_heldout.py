"""Selection by held-out F1 (rait.experiment.heldout): the hold-out asked like a benchmark, every candidate
scored through the real predict path, the best chosen; scripts/ship_model.py --by heldout-f1."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from rait.data.formats import write_records
from rait.data.sources import subsample
from rait.errors import RaitError
from rait.experiment import Stages, load_config, run_experiment, stages
from rait.experiment.choice import common_holdout
from rait.experiment.heldout import (
    HOLDOUT_BENCHMARK,
    benchmark_records,
    candidates,
    heldout_f1,
    heldout_split,
    holdout_records,
    type_list,
)
from rait.records import Conversation, Mention, Record, Turn
from rait.testing import lookup_predictor

ROOT = Path(__file__).resolve().parents[1]
POOL = 40


def record(n: int) -> Record:
    text = f"Barack Obama met person {n} in Paris."
    mentions = [
        Mention("Barack Obama", "person", 0, 12),
        Mention("Paris", "location", len(text) - 6, len(text) - 1),
    ]
    if n % 4 == 0:
        mentions.append(Mention("person", "rare", text.index("person"), text.index("person") + 6))
    return Record(f"p{n}", text, mentions)


CONFIG = """\
name: heldout
model: fake-model
embedder: hashing
output_dir: {out}
training:
  source: {source}
  sizes: [20]
  methods: [vanilla, ra-it]
  seeds: [1]
  hyper: {{validation_fraction: 0.2}}
evaluation:
  benchmarks: [crossner_ai]
  base: false
  modes:
    - kind: none
      decodings: [free, constrained]
    - kind: out-domain
      strategies: [nn_bm25]
      models: {{methods: [ra-it]}}
"""


def fake_stages() -> Stages:
    def build(config, cell, out_dir):
        ids = sorted(random.Random(cell.seed).sample(range(POOL), cell.size))
        rows = [
            Conversation(f"p{n}", [Turn("user", f"Text: {n}"), Turn("assistant", "I've read this text.")])
            for n in ids
        ]
        (out_dir / "train.jsonl").write_text("".join(json.dumps(r.to_sharegpt()) + "\n" for r in rows))
        return out_dir / "train.jsonl"

    def train(config, cell, data, out_dir):
        return out_dir

    def predict(config, cell, model, out_dir):
        (out_dir / "p.jsonl").write_text("")
        return out_dir / "p.jsonl"

    def evaluate(config, cell, predictions):
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n_queries": 0, "n_unparseable": 0}

    return Stages(build, train, predict, evaluate, lambda path: None)


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.setenv("RAIT_CACHE_DIR", str(tmp_path / "cache"))
    write_records([record(n) for n in range(POOL)], tmp_path / "source.jsonl", "rait")
    path = tmp_path / "heldout.yaml"
    path.write_text(CONFIG.format(out=tmp_path / "out", source=tmp_path / "source.jsonl"))
    config = load_config(path)
    run_experiment(config, stages=fake_stages())
    answers = {  # the vanilla model answers right; the RA-IT one also calls Paris a person and so on
        "vanilla": {"person": ["Barack Obama"], "location": ["Paris"]},
        "ra-it": {"person": ["Barack Obama", "Paris"], "location": ["Paris", "Barack Obama"]},
    }
    loaded = []

    def answerer(model, adapter, *args):
        loaded.append((model, args[-1]))  # a directory without an adapter config: loaded as the model
        return lookup_predictor(answers["ra-it" if "ra-it" in model else "vanilla"], open_probs={})

    monkeypatch.setattr(stages, "_answerer", answerer)
    return config, loaded


def test_the_holdout_is_asked_every_type_of_the_type_list(study):
    config, _ = study
    held = {c.id for c in common_holdout(config)}
    records = holdout_records(config, n_types=2)
    assert {r.id for r in records} == held and len(records) == 4  # 20% of the 20 passages each cell saw
    assert all(r.types == ["location", "person"] and r.source == HOLDOUT_BENCHMARK for r in records)
    assert all({m.type for m in r.mentions} <= {"location", "person"} for r in records)
    assert type_list([record(n) for n in range(POOL)], 3) == ["location", "person", "rare"]
    assert len(holdout_records(config, max_passages=2)) == 2
    with pytest.raises(RaitError, match="at least one type"):
        type_list([], 0)


def test_the_highest_heldout_f1_is_chosen_among_models_modes_and_decodings(study):
    config, loaded = study
    names = [(c.model_name, c.mode.name) for c in candidates(config)]
    assert names == [
        ("n20-vanilla-s1", "none"),
        ("n20-vanilla-s1", "none-constrained"),
        ("n20-ra-it-nn-k2-s1", "none"),
        ("n20-ra-it-nn-k2-s1", "none-constrained"),
        ("n20-ra-it-nn-k2-s1", "out-nn_bm25-k2"),
    ]
    result = heldout_f1(config, ["n20-vanilla-s1", "n20-ra-it-nn-k2-s1"], n_types=2, decoding="free")
    rows = {(r["cell"], r["mode"]): r for r in result["rows"]}
    assert (
        set(rows)
        == {
            ("n20-vanilla-s1", "none"),
            ("n20-ra-it-nn-k2-s1", "none"),
            ("n20-ra-it-nn-k2-s1", "out-nn_bm25-k2"),
        }
        or len(rows) == 3
    )
    assert rows[("n20-vanilla-s1", "none")]["f1"] == pytest.approx(100.0)
    assert rows[("n20-ra-it-nn-k2-s1", "none")]["f1"] == pytest.approx(100 * 2 / 3)  # P 1/2, R 1
    assert result["chosen"] == {
        "cell": "n20-vanilla-s1",
        "mode": "none",
        "decoding": "free",
        "threshold": None,
    }
    assert result["holdout"]["queries"] == 8 and result["holdout"]["types"] == ["location", "person"]
    assert all(r["n_queries"] == 8 for r in result["rows"])
    assert {decoding for _, decoding in loaded} == {"free"}
    predictions = config.output_dir / result["rows"][0]["predictions"]
    assert predictions.is_file()


def test_unfinished_models_are_listed_or_refused(study):
    config, _ = study
    marker = config.output_dir / "train" / "n20-ra-it-nn-k2-s1" / "DONE.json"
    marker.unlink()
    result = heldout_f1(config, n_types=2, max_passages=1)
    assert result["not_compared"] == {"n20-ra-it-nn-k2-s1": "todo"}
    with pytest.raises(RaitError, match="cannot be compared"):
        heldout_f1(config, ["n20-ra-it-nn-k2-s1"], n_types=2)


def test_ship_script_by_heldout_f1_writes_the_record(study, tmp_path, capsys):
    config, _ = study
    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    output = tmp_path / "record.json"
    args = ["--experiment", str(config.path), "--by", "heldout-f1", "--types", "2", "--decoding", "free"]
    assert script.main([*args, "--output", str(output), "--compare-only"]) == 0
    assert "chosen: n20-vanilla-s1 with mode none" in capsys.readouterr().out
    assert json.loads(output.read_text())["chosen"]["cell"] == "n20-vanilla-s1"
    with pytest.raises(SystemExit):
        script.main(["--experiment", str(config.path), "--types", "2"])  # --types without --by heldout-f1


def test_a_chosen_candidate_with_examples_is_shipped_with_its_pool(study):
    config, _ = study
    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    chosen = {"cell": "n20-ra-it-nn-k2-s1", "mode": "out-nn_bm25-k2", "decoding": "free", "threshold": 0.7}
    settings, pool = script.shipped_settings(config, chosen, {"thresholds": [0.5, 0.7], "multi_label": False})
    assert settings == {
        "decoding": "free",
        "threshold": 0.7,
        "multi_label": False,
        "examples": "pool",
        "pool": {"mode": "out-domain", "k": 2, "bm25_threshold": 20.0},
    }
    sample = subsample([record(n) for n in range(POOL)], 20, 1)  # the model's training sample (size, seed)
    assert [r.id for r in pool.records] == [r.id for r in sample]
    plain = dict(chosen, cell="n20-vanilla-s1", mode="none", threshold=None)
    assert script.shipped_settings(config, plain, None) == ({"decoding": "free"}, None)


def answer_with_scores(monkeypatch, ra_it_locations: list[str]) -> None:
    """The vanilla model answers right, scored 0.8; the RA-IT one also calls Paris a person (and gives
    ``ra_it_locations``), scored 0.99 and 0.95."""
    scored = {
        "vanilla": ({"person": ["Barack Obama"], "location": ["Paris"]}, {"person": 0.8, "location": 0.8}),
        "ra-it": (
            {"person": ["Barack Obama", "Paris"], "location": ra_it_locations},
            {"person": 0.99, "location": 0.95},
        ),
    }

    def answerer(model, adapter, *args):
        known, probs = scored["ra-it" if "ra-it" in model else "vanilla"]
        return lookup_predictor(known, open_probs=probs)

    monkeypatch.setattr(stages, "_answerer", answerer)


def test_the_shipped_choice_of_mentions_can_change_the_winner(study, monkeypatch):
    """With a threshold and one type per span, as rait.NER keeps mentions, the unsure vanilla model keeps
    nothing and the RA-IT model's confident wrong types compete with its right ones."""
    config, _ = study
    answer_with_scores(monkeypatch, ["Paris", "Barack Obama"])
    cells = ["n20-vanilla-s1", "n20-ra-it-nn-k2-s1"]
    shipped = heldout_f1(config, cells, n_types=2, decoding="free", choice=(0.9, False))
    rows = {(r["cell"], r["mode"]): r["f1"] for r in shipped["rows"]}
    assert rows[("n20-vanilla-s1", "none")] == 0.0
    assert rows[("n20-ra-it-nn-k2-s1", "none")] == pytest.approx(50.0)  # Paris kept as a person only
    assert shipped["chosen"]["cell"] == "n20-ra-it-nn-k2-s1"
    assert shipped["choice"] == {"threshold": 0.9, "multi_label": False}
    every = heldout_f1(config, cells, n_types=2, decoding="free")  # the same predictions, every mention
    assert every["chosen"]["cell"] == "n20-vanilla-s1" and every["choice"] is None


def test_each_candidate_can_be_scored_at_its_own_best_threshold(study, monkeypatch):
    """A model whose right answers score 0.8 loses at the shipped threshold 0.9 and wins at its own best
    threshold; every threshold's scores are recorded, and ties go to the lowest threshold."""
    config, _ = study
    answer_with_scores(monkeypatch, ["Paris"])
    cells = ["n20-vanilla-s1", "n20-ra-it-nn-k2-s1"]
    fixed = heldout_f1(config, cells, n_types=2, decoding="free", choice=(0.9, False))
    assert fixed["chosen"]["cell"] == "n20-ra-it-nn-k2-s1" and fixed["chosen"]["threshold"] == 0.9
    own = heldout_f1(
        config, cells, n_types=2, decoding="free", choice=(0.9, False), thresholds=[0.9, 0.5, 0.7]
    )
    rows = {r["cell"]: r for r in own["rows"]}
    assert rows["n20-vanilla-s1"]["threshold"] == 0.5 and rows["n20-vanilla-s1"]["f1"] == pytest.approx(100.0)
    assert [p["threshold"] for p in rows["n20-vanilla-s1"]["curve"]] == [0.5, 0.7, 0.9]
    assert [p["f1"] for p in rows["n20-vanilla-s1"]["curve"]] == pytest.approx([100.0, 100.0, 0.0])
    assert rows["n20-ra-it-nn-k2-s1"]["threshold"] == 0.5  # the same F1 at every threshold: the lowest
    assert own["chosen"] == {"cell": "n20-vanilla-s1", "mode": "none", "decoding": "free", "threshold": 0.5}
    assert own["choice"] == {"thresholds": [0.5, 0.7, 0.9], "multi_label": False}
    with pytest.raises(RaitError, match="thresholds to choose from"):
        heldout_f1(config, cells, n_types=2, decoding="free", thresholds=[0.5])


def test_ship_script_checks_the_mention_options(study):
    config, _ = study
    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    base = ["--experiment", str(config.path), "--by", "heldout-f1", "--compare-only"]
    for wrong in (
        ["--threshold", "1.5"],
        ["--every-mention", "--multi-label"],
        ["--every-mention", "--threshold", "0.5"],
        ["--every-mention", "--choose-threshold"],
        ["--choose-threshold", "--threshold", "0.5"],
        ["--heldout", "benchmarks", "--types", "3"],
        ["--per-benchmark", "5"],  # with the training hold-out
    ):
        with pytest.raises(SystemExit):
            script.main([*base, *wrong])
    with pytest.raises(SystemExit):
        script.main(["--experiment", str(config.path), "--threshold", "0.5"])  # without --by heldout-f1


def test_candidates_can_be_scored_on_the_benchmarks_held_out_sentences(study, tmp_path, monkeypatch):
    """--heldout benchmarks: the config's benchmarks' dev sentences (never test), every type of each."""
    config, _ = study
    data = tmp_path / "data" / "eval" / "en" / "bio" / "CrossNER" / "ai"
    data.mkdir(parents=True)
    sentence = [("Barack", "B-person"), ("Obama", "I-person"), ("visited", "O"), ("Paris", "B-location")]
    dev = "".join("".join(f"{w}\t{t}\n" for w, t in sentence) + "\n" for _ in range(3))
    (data / "dev.txt").write_text(dev)
    (data / "test.txt").write_text("Alan\tB-researcher\n\n")  # never read
    monkeypatch.setenv("RAIT_DATA_DIR", str(tmp_path / "data"))
    assert heldout_split("crossner_ai") == "dev" and heldout_split("mit_movie") == "train"
    records = benchmark_records(config, per_benchmark=2)
    assert len(records) == 2 and all(r.id.startswith("crossner_ai-dev-") for r in records)
    assert all("person" in r.types and "location" in r.types for r in records)
    result = heldout_f1(
        config,
        ["n20-vanilla-s1", "n20-ra-it-nn-k2-s1"],
        decoding="free",
        heldout="benchmarks",
        per_benchmark=2,
    )
    rows = {r["cell"]: r for r in result["rows"] if r["mode"] == "none"}
    assert rows["n20-vanilla-s1"]["f1"] == pytest.approx(100.0)
    assert rows["n20-ra-it-nn-k2-s1"]["f1"] == pytest.approx(100 * 2 / 3)
    assert result["chosen"]["cell"] == "n20-vanilla-s1"
    held = result["holdout"]
    assert held["set"] == "benchmarks" and held["benchmarks"] == ["crossner_ai"] and held["passages"] == 2
    assert held["queries"] == 2 * len(records[0].types) and "benchmarks" in result["rule"]
    assert (config.output_dir / "heldout-benchmarks" / "n20-vanilla-s1" / "none").is_dir()
    with pytest.raises(RaitError, match="unknown held-out set"):
        heldout_f1(config, ["n20-vanilla-s1"], heldout="test")
