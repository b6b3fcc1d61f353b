"""The experiment runner with fake stage functions: cell expansion, resume, crash safety, config errors."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rait.cli import app
from rait.errors import DataError, RaitError
from rait.experiment import (
    DONE_NAME,
    EvalCell,
    ExperimentError,
    InferenceMode,
    Stages,
    TrainCell,
    collect_results,
    load_config,
    plan,
    run_evaluate,
    run_experiment,
)
from rait.locks import lock_path
from rait.records import QueryPrediction
from rait.report import build_report

CONFIG = """\
name: fake
lang: en
model: fake-model
embedder: fake-embedder
training:
  source: fake-source
  sizes: [10, 20]
  methods: [vanilla, ra-it]
  strategies: [nn]
  k: [2]
  seeds: [1]
evaluation:
  benchmarks: [crossner_ai, mit_movie]
  max_examples: 5
  modes:
    - none
    - kind: out-domain
      strategies: [nn_bm25]
      models: {sizes: [20]}
"""


class FakeStages:
    """Stage functions that write small files, count calls, and can crash in one step after writing."""

    def __init__(self, crash_on: str | None = None):
        self.calls: list[tuple[str, str]] = []
        self.crash_on = crash_on

    def _call(self, stage: str, name: str, out_dir: Path) -> None:
        self.calls.append((stage, name))
        if self.crash_on == name:
            (out_dir / "partial.txt").write_text("half")
            raise RuntimeError(f"crash in {stage} {name}")

    def build(self, config, cell: TrainCell, out_dir: Path) -> Path:
        self._call("build", cell.name, out_dir)
        path = out_dir / "data.jsonl"
        path.write_text(cell.name)
        return path

    def train(self, config, cell: TrainCell, data: Path, out_dir: Path) -> Path:
        self._call("train", cell.name, out_dir)
        assert data.read_text() == cell.name
        (out_dir / "adapter").mkdir(exist_ok=True)
        return out_dir / "adapter"

    def predict(self, config, cell: EvalCell, model: Path | None, out_dir: Path) -> Path:
        self._call("predict", cell.name, out_dir)
        assert (model is None) == (cell.train is None)
        path = out_dir / "predictions.jsonl"
        path.write_text(json.dumps({"model": str(model)}) + "\n")
        return path

    def evaluate(self, config, cell: EvalCell, predictions: Path) -> dict:
        self.calls.append(("evaluate", cell.name))
        f1 = float(len(cell.name) % 7 * 10)
        return {"precision": f1, "recall": f1, "f1": f1, "n_queries": 3, "n_unparseable": 0}

    def stages(self) -> Stages:
        return Stages(self.build, self.train, self.predict, self.evaluate)

    def count(self, stage: str) -> int:
        return sum(1 for s, _ in self.calls if s == stage)


@pytest.fixture
def config(tmp_path: Path):
    path = tmp_path / "fake.yaml"
    path.write_text(CONFIG)
    return load_config(path, output_dir=tmp_path / "out")


def test_cells_expand_from_the_grid(config):
    assert [c.name for c in config.train_cells()] == [
        "n10-vanilla-s1",
        "n10-ra-it-nn-k2-s1",
        "n20-vanilla-s1",
        "n20-ra-it-nn-k2-s1",
    ]
    cells = config.eval_cells()
    # base and the two size-20 models get both modes, the size-10 models only "none"; two benchmarks each
    assert len(cells) == 2 * (2 + 1 + 1 + 2 + 2)
    assert [c.model_name for c in cells[-4:]] == ["base"] * 4 and cells[-5].train is not None
    assert EvalCell(None, InferenceMode("out-domain", "nn_bm25", 2), "mit_movie") in cells
    assert (
        EvalCell(TrainCell(10, "ra-it", "nn", 2, 1), InferenceMode("out-domain", "nn_bm25", 2), "mit_movie")
        not in cells
    )
    # out-domain examples come from the model's own training sample; for the base model the largest one
    assert config.pool_sample(TrainCell(10, "ra-it", "nn", 2, 1)) == (10, 1)
    assert config.pool_sample(None) == (20, 1)


def test_rows_carry_per_sentence_counts_where_the_marker_has_them(config):
    class Counting(FakeStages):
        def evaluate(self, config, cell: EvalCell, predictions: Path) -> dict:
            metrics = super().evaluate(config, cell, predictions)
            if cell.benchmark == "crossner_ai":  # mit_movie cells look like markers from before the counts
                metrics["sentences"] = {"s1": [1, 2, 3], "s2": [0, 0, 1]}
            return metrics

    results = run_experiment(config, stages=Counting().stages())
    by_benchmark = {r["benchmark"]: r for r in results["rows"]}
    assert by_benchmark["crossner_ai"]["sentences"] == {"s1": [1, 2, 3], "s2": [0, 0, 1]}
    assert "sentences" not in by_benchmark["mit_movie"]


def test_run_evaluate_keeps_counts_per_sentence(config, tmp_path):
    rows = [
        {
            "benchmark": "crossner_ai",
            "record_id": "1",
            "type": "person",
            "gold": ["Ada"],
            "output": '["Ada"]',
        },
        {"benchmark": "crossner_ai", "record_id": "1", "type": "city", "gold": [], "output": '["Rome"]'},
        {"benchmark": "crossner_ai", "record_id": "2", "type": "person", "gold": ["Bo"], "output": "[]"},
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cell = EvalCell(None, InferenceMode("none"), "crossner_ai")
    metrics = run_evaluate(config, cell, path)
    assert metrics["sentences"] == {"1": [1, 2, 1], "2": [0, 0, 1]}
    assert (metrics["n_correct"], metrics["n_pred"], metrics["n_gold"]) == (1, 2, 2)


def test_second_run_calls_nothing(config):
    fake = FakeStages()
    results = run_experiment(config, stages=fake.stages())
    assert (fake.count("build"), fake.count("train"), fake.count("predict"), fake.count("evaluate")) == (
        4,
        4,
        16,
        16,
    )
    assert results["complete"] and len(results["rows"]) == 16
    saved = json.loads((config.output_dir / "results.json").read_text())
    assert saved == results
    assert "| base | no examples |" in (config.output_dir / "results.md").read_text()

    again = FakeStages()
    assert run_experiment(config, stages=again.stages()) == results
    assert again.calls == []


def test_deleting_one_marker_reruns_only_that_cell(config):
    run_experiment(config, stages=FakeStages().stages())
    eval_dir = config.output_dir / "eval" / "n20-ra-it-nn-k2-s1" / "out-nn_bm25-k2" / "mit_movie"
    (eval_dir / DONE_NAME).unlink()
    (config.output_dir / "train" / "n10-vanilla-s1" / DONE_NAME).unlink()
    fake = FakeStages()
    results = run_experiment(config, stages=fake.stages())
    assert fake.calls == [
        ("train", "n10-vanilla-s1"),
        ("predict", "n20-ra-it-nn-k2-s1/out-nn_bm25-k2/mit_movie"),
        ("evaluate", "n20-ra-it-nn-k2-s1/out-nn_bm25-k2/mit_movie"),
    ]
    assert results["complete"]


def test_crash_mid_cell_leaves_no_marker_and_resumes(config):
    crashing = FakeStages(crash_on="n20-ra-it-nn-k2-s1")
    with pytest.raises(RuntimeError, match="crash in build"):
        run_experiment(config, stages=crashing.stages())
    data_dir = config.output_dir / "data" / "n20-ra-it-nn-k2-s1"
    assert (data_dir / "partial.txt").exists() and not (data_dir / DONE_NAME).exists()
    partial = json.loads((config.output_dir / "results.json").read_text())
    assert not partial["complete"] and 0 < len(partial["rows"]) < 16

    fake = FakeStages()
    results = run_experiment(config, stages=fake.stages())
    assert results["complete"]
    assert fake.count("build") == 1 and fake.count("train") == 1
    # the crashed cell and everything planned after it (the base model's cells come last)
    assert all(name.startswith(("n20-ra-it-nn-k2-s1", "base/")) for _, name in fake.calls)
    assert fake.count("predict") == 4 + 4


def test_dataset_and_model_made_once_for_all_their_cells(config):
    fake = FakeStages()
    run_experiment(config, stages=fake.stages())
    for stage in ("build", "train"):
        names = [name for s, name in fake.calls if s == stage]
        assert len(names) == len(set(names)) == 4
    models = {}
    for step in plan(config, fake.stages()):
        if step.stage == "eval" and step.cell.train is not None:
            used = json.loads((step.directory / "predictions.jsonl").read_text())["model"]
            models.setdefault(step.cell.train.name, set()).add(used)
    assert models["n20-ra-it-nn-k2-s1"] == {
        str(config.output_dir / "train" / "n20-ra-it-nn-k2-s1" / "adapter")
    }
    assert all(len(paths) == 1 for paths in models.values())


def test_changed_settings_refuse_to_mix_with_finished_cells(config, tmp_path):
    run_experiment(config, stages=FakeStages().stages())
    changed = tmp_path / "changed.yaml"
    changed.write_text(CONFIG.replace("max_examples: 5", "max_examples: 6"))
    fake = FakeStages()
    with pytest.raises(ExperimentError, match="other settings"):
        run_experiment(load_config(changed, output_dir=config.output_dir), stages=fake.stages())
    assert fake.calls == []


@pytest.mark.parametrize(
    ("hyper", "redone"),
    [
        ("{per_device_batch_size: 1, gradient_checkpointing: true, save_steps: 5}", False),  # how, not what
        ("{learning_rate: 0.1}", True),
    ],
)
def test_execution_settings_leave_finished_steps_done(config, tmp_path, hyper, redone):
    first = tmp_path / "first.yaml"
    first.write_text(CONFIG.replace("  seeds: [1]\n", "  seeds: [1]\n  hyper: {per_device_batch_size: 4}\n"))
    run_experiment(load_config(first, output_dir=config.output_dir), stages=FakeStages().stages())
    edited = tmp_path / "edited.yaml"
    edited.write_text(
        CONFIG.replace("  seeds: [1]\n", f"  seeds: [1]\n  hyper: {hyper}\n").replace(
            "  max_examples: 5\n", "  max_examples: 5\n  predict: {batch_size: 2}\n"
        )
    )
    fake, edited_config = FakeStages(), load_config(edited, output_dir=config.output_dir)
    if redone:
        with pytest.raises(ExperimentError, match="other settings"):
            run_experiment(edited_config, stages=fake.stages())
    else:
        assert run_experiment(edited_config, stages=fake.stages())["complete"]
    assert fake.calls == []


def test_half_done_step_with_other_settings_is_not_resumed(config):
    with pytest.raises(RuntimeError):
        run_experiment(config, stages=FakeStages(crash_on="n20-ra-it-nn-k2-s1").stages())
    started = config.output_dir / "data" / "n20-ra-it-nn-k2-s1" / "STARTED.json"
    marker = json.loads(started.read_text())
    marker["params"]["source"] = "what an older config said"
    started.write_text(json.dumps(marker))
    fake = FakeStages()
    with pytest.raises(ExperimentError, match=r"^1 step\(s\) .*data/n20-ra-it-nn-k2-s1; delete"):
        run_experiment(config, stages=fake.stages())
    assert fake.calls == []


def test_dry_run_lists_steps_and_what_is_done(config):
    runner = CliRunner()
    args = ["experiment", str(config.path), "--output-dir", str(config.output_dir), "--dry-run"]
    before = runner.invoke(app, args, terminal_width=200)
    assert before.exit_code == 0, before.output
    assert "24 todo" in before.output and "n20-ra-it-nn-k2-s1" in before.output
    assert not config.output_dir.exists()
    run_experiment(config, stages=FakeStages().stages())
    after = runner.invoke(app, args, terminal_width=200)
    assert "24 done" in after.output and "todo" not in after.output


def test_collect_writes_the_finished_cells_while_the_experiment_runs(config, tmp_path):
    with pytest.raises(RuntimeError):
        run_experiment(config, stages=FakeStages(crash_on="n20-ra-it-nn-k2-s1").stages())
    (config.output_dir / "results.json").unlink()
    (config.output_dir / "results.md").unlink()
    done = len(collect_results(config)["rows"])
    assert 0 < done < 16
    fd = os.open(lock_path(config.output_dir, directory=True), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running experiment holds it
        with pytest.raises(RaitError, match="in use by another rait process"):
            run_experiment(config, stages=FakeStages().stages())
        args = ["experiment", str(config.path), "--output-dir", str(config.output_dir), "--collect"]
        result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    finally:
        os.close(fd)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{done} eval cells in results, {16 - done} missing; "), (
        lines
    )
    saved = json.loads((config.output_dir / "results.json").read_text())
    assert saved == collect_results(config) and not saved["complete"]
    assert f"{done} of 16 eval cells done" in (config.output_dir / "results.md").read_text()

    changed = tmp_path / "changed.yaml"  # every eval cell made with other settings: counted as missing
    changed.write_text(CONFIG.replace("max_examples: 5", "max_examples: 6"))
    result = CliRunner().invoke(app, ["experiment", str(changed), "-o", str(config.output_dir), "--collect"])
    assert result.exit_code == 0, result.output
    assert f"0 eval cells in results, 16 missing ({done} made with other settings" in " ".join(
        result.output.split()
    )


def test_collect_can_choose_every_cells_mentions_again_by_score(config):
    run_experiment(config, stages=FakeStages().stages())
    text = "Marie Curie met Pierre Curie in Paris."
    eval_steps = [step for step in plan(config) if step.stage == "eval"]
    for step in eval_steps:  # real predictions in place of the fake ones: 2 of 3 mentions right
        rows = [
            QueryPrediction(
                step.cell.benchmark,
                "s1",
                "person",
                ["Marie Curie"],
                '["Marie Curie", "Pierre Curie"]',
                text,
                scores=[0.95, 0.5],
            ),
            QueryPrediction(
                step.cell.benchmark, "s1", "location", ["Paris"], '["Paris"]', text, scores=[0.97]
            ),
        ]
        path = config.output_dir / step.read_marker()["result"]["path"]
        path.write_text("".join(json.dumps(row.to_dict()) + "\n" for row in rows))
    everything = collect_results(config, choice=(0.0, True))
    assert {round(row["precision"], 2) for row in everything["rows"]} == {66.67}
    chosen = collect_results(config, choice=(0.9, False))
    assert chosen["choice"] == {"threshold": 0.9, "multi_label": False} and "choice" not in collect_results(
        config
    )
    assert len(chosen["rows"]) == len(eval_steps)
    assert {round(row["f1"], 2) for row in chosen["rows"]} == {100.0}

    args = ["experiment", str(config.path), "-o", str(config.output_dir), "--collect"]
    result = CliRunner().invoke(app, [*args, "--threshold", "0.9", "--one-type-per-span"])
    assert result.exit_code == 0, result.output
    assert json.loads((config.output_dir / "results.0.9-one-type.json").read_text()) == chosen
    assert "threshold 0.9, one type per span" in (config.output_dir / "results.0.9-one-type.md").read_text()
    report = build_report(chosen, config.output_dir / "report", samples=10).read_text()
    assert "mentions chosen again by score: threshold 0.9, one type per span" in report
    result = CliRunner().invoke(app, [*args[:-1], "--threshold", "0.9"])
    assert isinstance(result.exception, RaitError) and "with --collect" in str(result.exception)

    path.write_text(json.dumps(dataclasses.replace(rows[0], scores=None).to_dict()) + "\n")
    with pytest.raises(ExperimentError, match="has no mention scores"):
        collect_results(config, choice=(0.9, False))

    path.write_text("".join(json.dumps(row.to_dict()) + "\n" for row in rows))
    models = list(dict.fromkeys(step.cell.model_name for step in eval_steps))
    strict, *others = models  # the first model's own threshold drops Marie Curie (0.95) too
    record = {
        "choice": {"thresholds": [0.9, 0.96], "multi_label": False},
        "rows": [{"cell": strict, "mode": "none", "threshold": 0.9, "f1": 10.0}]
        + [{"cell": m, "mode": "none", "threshold": 0.9, "f1": 50.0} for m in others]
        + [{"cell": strict, "mode": "none", "threshold": 0.96, "f1": 60.0}],
    }
    record_path = config.output_dir / "heldout.json"
    record_path.write_text(json.dumps(record))
    result = CliRunner().invoke(app, [*args, "--thresholds-from", str(record_path)])
    assert result.exit_code == 0, result.output
    per_model = json.loads((config.output_dir / "results.per-model-one-type.json").read_text())
    f1 = {(row["model"], round(row["f1"], 2)) for row in per_model["rows"]}
    assert f1 == {(strict, 66.67)} | {(m, 100.0) for m in others}
    assert per_model["choice"]["threshold"] == {strict: 0.96, **{m: 0.9 for m in others}}
    assert f"{strict} 0.96" in (config.output_dir / "results.per-model-one-type.md").read_text()
    with pytest.raises(ExperimentError, match=f"no threshold for model {others[0]}"):
        collect_results(config, choice=({strict: 0.9}, False))
    record_path.write_text(json.dumps({"choice": {"threshold": 0.9, "multi_label": False}, "rows": []}))
    result = CliRunner().invoke(app, [*args, "--thresholds-from", str(record_path)])
    assert isinstance(result.exception, RaitError) and "threshold chosen per candidate" in str(
        result.exception
    )
    result = CliRunner().invoke(app, [*args, "--thresholds-from", str(record_path), "--threshold", "0.5"])
    assert isinstance(result.exception, RaitError) and "exclude each other" in str(result.exception)


def test_collect_and_dry_run_exclude_each_other(config):
    args = ["experiment", str(config.path), "--collect", "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, RaitError) and "exclude each other" in str(result.exception)
    assert not config.output_dir.exists()
    result = CliRunner().invoke(app, ["experiment", str(config.path), "--collect", "--export-adapters"])
    assert isinstance(result.exception, RaitError) and "--export-adapters" in str(result.exception)


BAD_CONFIGS = [
    ("trainng:\n  source: x\n", "trainng", 1, "unknown key"),
    (CONFIG.replace("sizes: [10, 20]", "sizes: [10, 0]"), "training.sizes[1]", 7, "at least 1"),
    (
        CONFIG.replace("methods: [vanilla, ra-it]", "methods: [vanilla, raitt]"),
        "training.methods[1]",
        8,
        "must be one of vanilla, ra-it",
    ),
    (CONFIG.replace("  source: fake-source\n", ""), "training", 5, "missing required key 'source'"),
    (
        CONFIG.replace("[crossner_ai, mit_movie]", "[crossner_ai, no_such_bench]"),
        "evaluation.benchmarks[1]",
        13,
        "must be one of",
    ),
    (
        CONFIG.replace("[crossner_ai, mit_movie]", "[crossner_ai, weibo]"),
        "evaluation.benchmarks[1]",
        13,
        "is zh, the experiment's lang is en",
    ),
    (CONFIG.replace("kind: out-domain", "kind: in-domain"), "evaluation.modes[1]", 17, "pool_sizes"),
    (
        CONFIG.replace("strategies: [nn_bm25]", "strategies: nn_bm25\n      pool_sizes: [3]"),
        "evaluation.modes[1].pool_sizes",
        19,
        "only for in-domain",
    ),
    (
        CONFIG.replace("max_examples: 5", "max_examples: five"),
        "evaluation.max_examples",
        14,
        "must be an integer",
    ),
    (
        CONFIG.replace("models: {sizes: [20]}", "models: {size: [20]}"),
        "evaluation.modes[1].models.size",
        19,
        "unknown key",
    ),
    (CONFIG.replace("model: fake-model\n", ""), "", None, "missing required key 'model'"),
    (
        CONFIG.replace("max_examples: 5", "max_examples: 5\n  protocol: anywhere"),
        "evaluation.protocol",
        15,
        "must be one of uniner, ra-it",
    ),
]


@pytest.mark.parametrize(("text", "key", "line", "message"), BAD_CONFIGS)
def test_config_errors_name_file_line_and_key(tmp_path, text, key, line, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        load_config(path)
    error = info.value
    assert error.path == str(path)
    assert error.field == (key or None)
    assert error.line == line
    assert message in str(error)


def test_invalid_yaml_reports_its_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntraining: [a,\n  b: }\n")
    with pytest.raises(DataError, match="invalid YAML") as info:
        load_config(path)
    assert info.value.line == 3


def test_protocol_reaches_scoring_and_results(tmp_path):
    from rait.experiment import run_evaluate

    path = tmp_path / "ra_it.yaml"
    path.write_text(CONFIG.replace("max_examples: 5", "max_examples: 5\n  protocol: ra-it"))
    config = load_config(path, output_dir=tmp_path / "out")
    assert config.evaluation.protocol == "ra-it"
    cell = config.eval_cells()[0]
    predictions = tmp_path / "predictions.jsonl"
    row = QueryPrediction(cell.benchmark, "1", "person", ["Ann"], 'Entities: ["Ann"]')
    predictions.write_text(json.dumps(row.to_dict()) + "\n")
    metrics = run_evaluate(config, cell, predictions)
    assert metrics["f1"] == pytest.approx(100.0) and metrics["n_capped"] == 0
    results = run_experiment(config, stages=FakeStages().stages())
    assert results["protocol"] == "ra-it"
    eval_params = [s.params for s in plan(config) if s.stage == "eval"]
    assert all(p["protocol"] == "ra-it" for p in eval_params)


def test_shipped_configs_are_valid():
    configs = sorted((Path(__file__).parents[1] / "configs" / "experiments").glob("*.yaml"))
    assert {p.stem for p in configs} >= {"paper_en", "paper_zh", "cpu_en", "cpu_zh", "smoke"}
    for path in configs:
        config = load_config(path)
        assert config.eval_cells(), path


@pytest.mark.slow
def test_smoke_config_runs_end_to_end_with_a_tiny_model(tmp_path, monkeypatch):
    """smoke.yaml through the real stages (build, train, predict, evaluate), scaled down to a tiny model."""
    from rait.inference.constrained import is_copy_answer
    from rait.testing import save_tiny_model

    repo = Path(__file__).parents[1]
    monkeypatch.chdir(repo)  # the config's sample-data paths are relative to the repository root
    monkeypatch.setenv("RAIT_CACHE_DIR", str(tmp_path / "cache"))
    data = yaml.safe_load((repo / "configs" / "experiments" / "smoke.yaml").read_text())
    data["model"] = str(save_tiny_model(tmp_path / "tiny"))
    data["training"]["hyper"]["max_steps"] = 1
    data["evaluation"]["max_examples"] = 3
    data["evaluation"]["predict"]["max_new_tokens"] = 4
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, output_dir=tmp_path / "out")

    results = run_experiment(config)
    assert results["complete"]
    assert [(r["model"], r["mode"], r.get("decoding", "free")) for r in results["rows"]] == [
        ("base", "none", "free"),
        ("n20-vanilla-s42", "none", "free"),
        ("n20-vanilla-s42", "none", "constrained"),
        ("n20-ra-it-nn-k2-s42", "none", "free"),
        ("n20-ra-it-nn-k2-s42", "out-domain", "free"),
    ]
    constrained = config.output_dir / "eval" / "n20-vanilla-s42" / "none-constrained" / "en_test"
    rows = [json.loads(line) for line in (constrained / "predictions.jsonl").read_text().splitlines()]
    assert rows and all(is_copy_answer(r["output"], r["text"]) for r in rows)
    assert all(r["benchmark"] == "en_test" and r["n_queries"] > 0 for r in results["rows"])
    assert all(len(r["sentences"]) == 3 for r in results["rows"])  # counts for each of the 3 sentences
    out = config.output_dir
    ra_it = (out / "data" / "n20-ra-it-nn-k2-s42" / "train.jsonl").read_text()
    vanilla = (out / "data" / "n20-vanilla-s42" / "train.jsonl").read_text()
    assert "Here are some examples" in ra_it and "Here are some examples" not in vanilla
    assert (out / "train" / "n20-ra-it-nn-k2-s42" / "adapter_config.json").is_file()
    assert all(s.status() == "done" for s in plan(config))


def test_file_benchmarks_with_format_label_map_and_sample_size(tmp_path, monkeypatch):
    """A config lists data files as benchmarks, read and sampled like the registered ones."""
    from rait.experiment.stages import _benchmark_records

    fixtures = Path(__file__).parent / "fixtures" / "benchmarks"
    monkeypatch.chdir(fixtures)
    text = CONFIG.replace(
        "[crossner_ai, mit_movie]",
        "\n    - crossner_ai\n    - conll2003/test.txt\n"
        "    - {file: fabner/test.txt, name: fab, format: bio, label_map: fabner_labels.yaml,\n"
        "       max_examples: 1}",
    )
    path = tmp_path / "files.yaml"
    path.write_text(text)
    config = load_config(path, output_dir=tmp_path / "out")
    assert config.evaluation.benchmarks == ("crossner_ai", "conll2003", "fab")
    conll = _benchmark_records(config, "conll2003")
    assert len(conll) == 3 and conll[0].query_types() == [
        "person",
        "organization",
        "location",
        "miscellaneous",
    ]
    [fab] = _benchmark_records(config, "fab")
    assert fab.source == "fab" and fab.query_types() == ["manufacturing process", "material"]
    steps = {step.name: step for step in plan(config) if step.stage == "eval"}
    fab_step = next(s for name, s in steps.items() if name.endswith("/fab"))
    assert fab_step.params["benchmark_options"] == {
        "format": "bio",
        "label_map": "fabner_labels.yaml",
        "max_examples": 1,
    }
    bad = text.replace("label_map: fabner_labels.yaml", "label_map: nope.yaml")
    path.write_text(bad)
    with pytest.raises(DataError, match=r"label_map.*not a file") as info:
        load_config(path)
    assert info.value.line == 16


def test_decodings_expand_into_extra_modes_that_reach_predict_and_the_report(tmp_path):
    from rait.report import results_markdown

    path = tmp_path / "decodings.yaml"
    path.write_text(CONFIG.replace("    - none\n", "    - {kind: none, decodings: [free, constrained]}\n"))
    config = load_config(path, output_dir=tmp_path / "out")
    names = [c.name for c in config.eval_cells()]
    assert "base/none/mit_movie" in names and "base/none-constrained/mit_movie" in names
    assert len(names) == 2 * (2 * 5 + 1 + 2)  # every model twice without examples, out-domain as before
    free = [s.params for s in plan(config) if s.stage == "eval" and s.name.startswith("base/none/")]
    assert free and all("decoding" not in p for p in free)  # finished free cells of older runs stay done
    fake = FakeStages()
    seen = []
    predict = fake.predict

    def recording(config, cell, model, out_dir):
        seen.append(cell.mode.decoding)
        return predict(config, cell, model, out_dir)

    fake.predict = recording
    results = run_experiment(config, stages=fake.stages())
    assert seen.count("constrained") == 10 and seen.count("free") == 16
    decodings = [r.get("decoding", "free") for r in results["rows"] if r["mode"] == "none"]
    assert decodings.count("constrained") == decodings.count("free") == 10
    text = results_markdown(results)
    assert "| base | no examples |" in text and "| base | no examples, constrained decoding |" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("    - none\n", "    - {kind: none, decodings: [beam]}\n"))
    with pytest.raises(DataError, match="decodings"):
        load_config(bad)


def test_allow_identical_examples_is_a_bool_predict_option(tmp_path):
    good = tmp_path / "leak.yaml"
    good.write_text(
        CONFIG.replace(
            "  max_examples: 5\n", "  max_examples: 5\n  predict: {allow_identical_examples: true}\n"
        )
    )
    assert load_config(good, output_dir=tmp_path / "o").evaluation.predict == {
        "allow_identical_examples": True
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        CONFIG.replace("  max_examples: 5\n", "  max_examples: 5\n  predict: {allow_identical_examples: 3}\n")
    )
    with pytest.raises(DataError, match="must be a bool"):
        load_config(bad, output_dir=tmp_path / "o")


def test_train_seeds_train_one_sample_several_times(tmp_path):
    """``train_seeds``: the same data (one build step) trained once per seed; modes can select by seed."""
    text = CONFIG.replace("  seeds: [1]\n", "  seeds: [1]\n  train_seeds: [1, 7]\n").replace(
        "models: {sizes: [20]}", "models: {sizes: [20], seeds: [7], base: false}"
    )
    path = tmp_path / "seeds.yaml"
    path.write_text(text)
    config = load_config(path, output_dir=tmp_path / "out")
    names = [c.name for c in config.train_cells()]
    assert names[:4] == ["n10-vanilla-s1", "n10-vanilla-s1-t7", "n10-ra-it-nn-k2-s1", "n10-ra-it-nn-k2-s1-t7"]
    assert TrainCell(10, "vanilla", seed=1, train_seed=7).training_seed == 7
    assert TrainCell(10, "vanilla", seed=1).training_seed == 1
    extra = text.replace(
        "  seeds: [1]\n", "  seeds: [1]\n  extra_grids: [{sizes: [10], methods: [vanilla], seeds: [2]}]\n"
    )
    path.write_text(extra)
    assert [c.name for c in load_config(path).train_cells()[-2:]] == [
        "n10-vanilla-s2-t1",
        "n10-vanilla-s2-t7",
    ]
    path.write_text(text)
    out_models = {c.model_name for c in config.eval_cells() if c.mode.kind == "out-domain"}
    assert out_models == {"n20-vanilla-s1-t7", "n20-ra-it-nn-k2-s1-t7"}

    class Recording(FakeStages):
        def train(self, config, cell: TrainCell, data: Path, out_dir: Path) -> Path:
            self._call("train", cell.name, out_dir)
            assert data.read_text() == dataclasses.replace(cell, train_seed=None).name  # the sample's data
            (out_dir / "adapter").mkdir(exist_ok=True)
            return out_dir / "adapter"

    fake = Recording()
    results = run_experiment(config, stages=fake.stages())
    assert fake.count("build") == 4 and fake.count("train") == 8
    seeded = [r for r in results["rows"] if r["model"] == "n10-vanilla-s1-t7"]
    assert seeded and all(r["seed"] == 1 and r["train_seed"] == 7 for r in seeded)


def test_run_train_keeps_the_sample_hold_out_for_another_training_seed(tmp_path, monkeypatch):
    from rait.experiment import stages

    seen = []
    monkeypatch.setattr("rait.training.train", lambda config: seen.append(config) or Path(config.output_dir))
    path = tmp_path / "fake.yaml"
    path.write_text(CONFIG)
    config = load_config(path, output_dir=tmp_path / "out")
    stages.run_train(config, TrainCell(10, "vanilla", seed=1, train_seed=7), tmp_path / "d.jsonl", tmp_path)
    stages.run_train(config, TrainCell(10, "vanilla", seed=1), tmp_path / "d.jsonl", tmp_path)
    assert (seen[0].seed, seen[0].split_seed) == (7, 1)
    assert (seen[1].seed, seen[1].split_seed) == (1, None)


RECIPES = CONFIG.replace(
    "  seeds: [1]\n",
    """  seeds: [1]
  recipes:
    neg4: {build: {negatives: 4, negative_sampling: hard}}
    full: {hyper: {finetuning: full, learning_rate: 5.0e-5}}
  extra_grids:
    - {sizes: [20], methods: [vanilla], recipes: [neg4, full]}
""",
)


def test_recipes_add_cells_whose_build_and_training_options_reach_the_stages(tmp_path):
    plain_path, path = tmp_path / "plain.yaml", tmp_path / "recipes.yaml"
    plain_path.write_text(CONFIG)
    path.write_text(RECIPES.replace("models: {sizes: [20]}", "models: {sizes: [20], recipes: [none]}"))
    plain, config = (
        load_config(plain_path, output_dir=tmp_path / "out"),
        load_config(path, output_dir=tmp_path / "out"),
    )
    names = [c.name for c in config.train_cells()]
    assert names[-2:] == ["n20-vanilla-s1-neg4", "n20-vanilla-s1-full"]
    old = {(s.stage, s.name): s.params for s in plan(plain)}
    new = {(s.stage, s.name): s.params for s in plan(config)}
    assert all(new[key] == params for key, params in old.items())  # cells without a recipe: as before
    neg4 = new[("build", "n20-vanilla-s1-neg4")]
    assert neg4["recipe"] == "neg4" and neg4["build"] == {"negatives": 4, "negative_sampling": "hard"}
    assert neg4["embedder"] == "fake-embedder"  # hard negatives embed type names
    assert new[("train", "n20-vanilla-s1-full")]["hyper"] == {"finetuning": "full", "learning_rate": 5e-5}
    out_domain = {c.model_name for c in config.eval_cells() if c.mode.kind == "out-domain"}
    assert out_domain == {"n20-vanilla-s1", "n20-ra-it-nn-k2-s1", "base"}

    seen = {}
    fake = FakeStages()

    def build(cfg, cell, out_dir):
        seen[("build", cell.name)] = cfg.training.build
        return fake.build(cfg, cell, out_dir)

    def train(cfg, cell, data, out_dir):
        seen[("train", cell.name)] = cfg.training.hyper
        return fake.train(cfg, cell, data, out_dir)

    run_experiment(config, stages=Stages(build, train, fake.predict, fake.evaluate))
    assert seen[("build", "n20-vanilla-s1-neg4")] == {"negatives": 4, "negative_sampling": "hard"}
    assert seen[("train", "n20-vanilla-s1-full")]["finetuning"] == "full"
    assert seen[("build", "n20-vanilla-s1")] == {} and seen[("train", "n20-vanilla-s1")] == {}


@pytest.mark.parametrize(
    ("replace", "key", "message"),
    [
        (
            ("recipes: [neg4, full]", "recipes: [neg5]"),
            "training.extra_grids[0].recipes[0]",
            "must be one of",
        ),
        (
            ("negatives: 4,", "negatives: 4, negative_prob: 0.1,"),
            "training.recipes.neg4.build",
            "leave it out",
        ),
        (
            ("finetuning: full", "finetuning: 3"),
            "training.recipes.full.hyper.finetuning",
            "expected a string",
        ),
        (
            (RECIPES[RECIPES.index("  recipes:") : RECIPES.index("  extra_grids")], "  recipes: [neg4]\n"),
            "training.recipes",
            "must be a mapping",
        ),
        (("    full:", "    Full:"), "training.recipes.Full", "lower-case"),
    ],
)
def test_recipe_errors_name_the_key(tmp_path, replace, key, message):
    path = tmp_path / "bad.yaml"
    path.write_text(RECIPES.replace(*replace))
    with pytest.raises(DataError) as info:
        load_config(path)
    assert info.value.field == key and message in str(info.value)
