"""The precision option: resolution of ``auto``, and its use by prediction, rait.NER and experiments."""

from __future__ import annotations

import json

import pytest
import torch

from rait import precision
from rait.api import NER
from rait.errors import DataError, RaitError
from rait.experiment import load_config, plan
from rait.inference import (
    PassageQuery,
    PredictConfig,
    load_predictor,
    meta_path,
    run_predict,
)
from rait.testing import save_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("precision") / "tiny"))


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_cpus_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision(None, "cpu") == expected
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"


def test_cpu_probe_agrees_with_proc_cpuinfo():
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert precision.cpu_has_native_bf16() == any(f in flags for f in ("avx512_bf16", "amx_bf16", "amx_tile"))


def test_unknown_precision_is_an_error():
    with pytest.raises(RaitError, match="unknown precision 'fp8'"):
        precision.resolve_precision("fp8", "cpu")


@pytest.mark.parametrize(("choice", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_predictor_and_ner_load_in_the_chosen_precision(tiny, choice, dtype):
    predictor = load_predictor(tiny, precision=choice, max_new_tokens=4)
    assert next(predictor.model.parameters()).dtype == dtype
    ner = NER.from_pretrained(tiny, precision=choice, max_new_tokens=4)
    assert next(ner.predictor.model.parameters()).dtype == dtype
    assert isinstance(ner.predict_entities("Ada Lovelace lived in London.", ["person"]), list)


def test_predictions_record_the_resolved_precision_and_refuse_to_mix(tiny, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("Ada Lovelace lived in London.\n")
    config = PredictConfig(
        output=tmp_path / "p.jsonl", model=tiny, input=texts, types=["person"], max_new_tokens=4
    )
    config.precision = "fp32"
    run_predict(config, progress=False)
    assert json.loads(meta_path(config.output).read_text())["settings"]["precision"] == "fp32"
    config.precision = "bf16"
    with pytest.raises(RaitError, match="precision: 'fp32', now 'bf16'"):
        run_predict(config, progress=False)
    # an output written before the option existed was fp32
    meta = json.loads(meta_path(config.output).read_text())
    del meta["settings"]["precision"]
    meta_path(config.output).write_text(json.dumps(meta))
    config.precision = "fp32"
    assert run_predict(config, progress=False).n_resumed == 1


EXPERIMENT = """\
name: p
lang: en
model: fake-model
training:
  source: fake-source
  sizes: [10]
  methods: [vanilla]
  hyper: {precision: PRECISION}
evaluation:
  benchmarks: [crossner_ai]
  predict: {precision: PRECISION}
"""


def test_experiment_steps_carry_the_resolved_precision(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    path = tmp_path / "p.yaml"
    for choice, expected in (("auto", "bf16"), ("bf16", "bf16"), ("fp32", None)):
        path.write_text(EXPERIMENT.replace("PRECISION", choice))
        steps = {step.stage: step for step in plan(load_config(path, output_dir=tmp_path / "out"))}
        assert steps["train"].params.get("precision") == expected
        assert steps["eval"].params.get("precision") == expected


def test_experiment_precision_values_are_checked(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(EXPERIMENT.replace("PRECISION", "fp8"))
    with pytest.raises(DataError, match="precision"):
        load_config(path)


def test_predictor_gives_the_vocabulary_projection_a_contiguous_input(tiny):
    predictor = load_predictor(tiny, precision="bf16", max_new_tokens=3)
    seen = []
    head = predictor.model.get_output_embeddings()
    head.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    predictor.answer_many([PassageQuery("Ada Lovelace lived in London.", ("person", "city"), (), "en")])
    assert seen and all(seen)
