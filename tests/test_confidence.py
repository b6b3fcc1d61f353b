"""Confidence scores at choice points, the threshold and one type per span (rait.inference.confidence), in
the API, prediction files, `rait evaluate` and vLLM."""

from __future__ import annotations

import json
import math
import random

import pytest
from transformers import LlamaForCausalLM
from typer.testing import CliRunner

from rait.api import NER
from rait.chat import stop_token_ids
from rait.cli import app
from rait.errors import RaitError
from rait.evaluation import SWEEP_THRESHOLDS, evaluate_file, sweep
from rait.inference import PassageQuery, Predictor, reselect
from rait.inference.confidence import (
    AFTER,
    OPEN,
    SCORE_RULE,
    START,
    STRING,
    ChoiceTokens,
    check_multi_label,
    check_threshold,
    mention_scores,
    select_entities,
)
from rait.inference.constrained import token_byte_strings
from rait.records import QueryPrediction
from rait.testing import tiny_model_and_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = "Barack Obama visited Paris, France."


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_and_tokenizer()


def test_choice_tokens_sort_the_vocabulary(tiny):
    _, tokenizer = tiny
    choices = ChoiceTokens(token_byte_strings(tokenizer))
    ids = tokenizer.convert_tokens_to_ids

    def sides(state):
        opens, others = choices.sets[state]
        return set(opens.tolist()), set(others.tolist())

    opens, others = sides(START)
    assert ids('["') in opens and ids("[") in others
    opens, others = sides(STRING)
    assert ids('",') in opens and {ids('"]'), ids('"')} <= others and ids("Paris") not in opens | others
    opens, others = sides(AFTER)
    assert ids(",") in opens and ids("]") in others
    opens, others = sides(OPEN)
    assert ids('"') in opens and ids("]") in others


class KnownPredictor(Predictor):
    """The tiny model's predictor with the next-token distribution replaced, after given positions, by known
    probabilities: ``script[position]`` maps token ids to probabilities (every other token gets ~0)."""

    script: dict[int, dict[int, float]] = {}

    def _forward(self, ids, mask, positions, cache, select):
        logits = super()._forward(ids, mask, positions, cache, select)
        if logits is not None:
            for row, position in enumerate(positions.reshape(-1)[select].tolist()):
                if position in self.script:
                    logits[row] = -1e4
                    for token, p in self.script[position].items():
                        logits[row, token] = math.log(p)
        return logits


@pytest.mark.parametrize("decoding", ["free", "constrained", "constrained-words"])
def test_a_model_with_known_probabilities_gives_known_scores(tiny, decoding):
    model, tokenizer = tiny
    lm = LlamaForCausalLM(model.config).double()
    lm.load_state_dict(model.state_dict())
    predictor = KnownPredictor(lm, tokenizer, max_new_tokens=16, decoding=decoding)
    ids = tokenizer.convert_tokens_to_ids
    answer = '["Paris", "Barack Obama"]'
    chain = [*tokenizer(answer, add_special_tokens=False)["input_ids"], stop_token_ids(tokenizer)[0]]
    assert chain[0] == ids('["') and chain[2] == ids('",')
    prefix, suffixes = predictor._token_ids(tokenizer, PassageQuery(TEXT, ("person",)))
    start = len(prefix) + len(suffixes[0]) - 1
    script = {start + i: {token: 1.0} for i, token in enumerate(chain)}
    script[start] = {ids('["'): 0.7, ids("["): 0.3}  # open the first mention: 0.7
    script[start + 2] = {ids('",'): 0.5, ids('"]'): 0.4, ids('"'): 0.1}  # open a second one: 0.5
    predictor.script = script
    found = predictor.answer(TEXT, ["person"])[0]
    assert found == answer
    expected = {"first": (0.7, 0.7), "open": (0.7, 0.5), "product": (0.7, 0.35)}
    assert found.scores == pytest.approx(expected[SCORE_RULE], abs=1e-4)
    for rule, scores in expected.items():
        assert mention_scores(["Paris", "Barack Obama"], [0.7, 0.5], rule) == pytest.approx(scores)


def test_scores_lie_in_0_1_and_a_higher_threshold_returns_a_subset(tiny):
    model, tokenizer = tiny
    predictor = Predictor(model, tokenizer, max_new_tokens=24, decoding="constrained")
    ner = NER(predictor, threshold=0, multi_label=True)
    texts = [
        TEXT,
        "Marie Curie won the Nobel Prize in Stockholm, Sweden.",
        "Angela Merkel met Macron in Berlin.",
    ]
    types = ["person", "location", "country", "award"]
    every = ner.batch_predict_entities(texts, types)
    scores = [e["score"] for entities in every for e in entities]
    assert scores and all(0 <= s <= 1 for s in scores)
    for multi_label in (True, False):
        previous = None
        for threshold in (0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1):
            kept = ner.batch_predict_entities(texts, types, threshold=threshold, multi_label=multi_label)
            as_keys = [{(e["type"], e["start"], e["end"]) for e in entities} for entities in kept]
            assert all(e["score"] >= threshold for entities in kept for e in entities)
            if previous is not None:
                assert all(now <= before for now, before in zip(as_keys, previous, strict=True))
            previous = as_keys


@pytest.mark.parametrize("multi_label", [True, False])
def test_a_threshold_cuts_low_answers_short_and_returns_what_selection_of_whole_answers_keeps(
    multi_label, monkeypatch
):
    model, tokenizer = tiny_model_and_tokenizer()
    predictor = Predictor(model.double(), tokenizer, max_new_tokens=24, decoding="constrained")
    ner = NER(predictor, threshold=0, multi_label=True)
    texts = [TEXT, "Marie Curie won the Nobel Prize in Stockholm.", "Angela Merkel met Macron in Berlin."]
    types = ["person", "location", "country", "award"]
    every = ner.batch_predict_entities(texts, types)
    scores = sorted({e["score"] for entities in every for e in entities})
    threshold = scores[len(scores) // 2]
    reasons, decode = [], Predictor._decode

    def recording(self, ids):
        reasons.append(decode(self, ids).finish_reason)
        return decode(self, ids)

    monkeypatch.setattr(Predictor, "_decode", recording)
    kept = ner.batch_predict_entities(texts, types, threshold=threshold, multi_label=multi_label)
    assert kept == [select_entities(entities, threshold, multi_label) for entities in every]
    assert "dropped" in reasons
    assert predictor.min_score is None  # set for the call only


def _entity(text, entity_type, start, score):
    return {
        "text": text,
        "type": entity_type,
        "start": start,
        "end": start + len(text),
        "found": True,
        "score": score,
    }


def test_one_type_per_span_keeps_the_best_scoring_type_and_multi_label_keeps_all():
    entities = [
        _entity("Paris", "location", 21, 0.9),
        _entity("Paris", "person", 21, 0.6),
        _entity("Barack Obama", "person", 0, 0.8),
        _entity("Obama", "location", 7, 0.85),  # overlaps the person, scores higher
        {"text": "Nowhere", "type": "location", "start": None, "end": None, "found": False, "score": 0.3},
        {"text": "nowhere", "type": "person", "start": None, "end": None, "found": False, "score": 0.4},
    ]
    flat = select_entities(entities, None, multi_label=False)
    assert [(e["text"], e["type"]) for e in flat] == [
        ("Paris", "location"),
        ("Obama", "location"),
        ("nowhere", "person"),
    ]
    assert select_entities(entities, None, multi_label=True) == entities
    assert select_entities(entities, 0.8, multi_label=True) == entities[:4:2] + [entities[3]]


def test_a_higher_threshold_is_a_subset_for_random_entities():
    rng = random.Random(0)
    for _ in range(50):
        entities = []
        for _ in range(rng.randint(0, 12)):
            start = rng.randint(0, 30)
            entities.append(_entity("x" * rng.randint(1, 6), rng.choice("abc"), start, rng.random()))
        for multi_label in (True, False):
            low, high = sorted(rng.random() for _ in range(2))
            small = select_entities(entities, high, multi_label)
            large = select_entities(entities, low, multi_label)
            assert all(e in large for e in small)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "high", True, float("nan")])
def test_bad_thresholds_are_refused_in_one_line(bad, tiny):
    with pytest.raises(RaitError, match="threshold must be a number from 0 to 1") as info:
        check_threshold(bad)
    assert "\n" not in str(info.value)
    model, tokenizer = tiny
    with pytest.raises(RaitError, match="threshold"):
        NER(Predictor(model, tokenizer), threshold=bad)
    with pytest.raises(RaitError, match="multi_label must be true or false"):
        check_multi_label("yes")


def flat(rows, threshold):
    return reselect(rows, threshold, False)


def _rows() -> list[dict]:
    """Two passages, each asked two types, with scored mentions (one span given two types)."""
    text1, text2 = "Paris Hilton flew to Paris.", "Obama met Merkel in Berlin."
    return [
        QueryPrediction(
            "b", "1", "person", ["Paris Hilton"], '["Paris Hilton", "Paris"]', text1, scores=[0.9, 0.3]
        ),
        QueryPrediction("b", "1", "location", ["Paris"], '["Paris"]', text1, scores=[0.8]),
        QueryPrediction(
            "b", "2", "person", ["Obama", "Merkel"], '["Obama", "Berlin"]', text2, scores=[0.95, 0.4]
        ),
        QueryPrediction("b", "2", "location", ["Berlin"], '["Berlin", "Merkel"]', text2, scores=[0.7, 0.2]),
    ]


def test_a_threshold_sweep_on_a_predictions_file_equals_rait_evaluate_at_each_point(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(row.to_dict()) + "\n" for row in _rows()))
    report_path = tmp_path / "report.json"
    runner = CliRunner()
    result = runner.invoke(
        app, ["evaluate", str(path), "-o", str(report_path), "--curve", "--one-type-per-span"]
    )
    assert result.exit_code == 0, result.output
    curve = json.loads(report_path.read_text())["curve"]["points"]
    assert [p["threshold"] for p in curve] == list(SWEEP_THRESHOLDS)
    for point, (threshold, report) in zip(curve, sweep(_rows(), flat), strict=True):
        assert point["f1"] == pytest.approx(report.average_f1)
        at = tmp_path / f"at-{threshold}.json"
        args = ["evaluate", str(path), "-o", str(at), "--threshold", str(threshold), "--one-type-per-span"]
        assert runner.invoke(app, args).exit_code == 0
        single = json.loads(at.read_text())["average"]
        assert (single["precision"], single["recall"], single["f1"]) == pytest.approx(
            (point["precision"], point["recall"], point["f1"])
        )
    # by hand at 0.5, one type per span: Paris Hilton (person), Paris (location), Obama (person), Berlin
    # (location, the person at 0.4 is below the threshold)
    kept = reselect(_rows(), 0.5, False)
    assert [r.dropped for r in kept] == [["Paris"], [], ["Berlin"], ["Merkel"]]
    assert evaluate_file(path).average_f1 < sweep(_rows(), flat, [0.5])[0][1].average_f1


def test_evaluate_refuses_unscored_or_bad_scores(tmp_path):
    path = tmp_path / "predictions.jsonl"
    rows = [r.to_dict() for r in _rows()]
    runner = CliRunner()
    rows[0]["scores"] = None
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = runner.invoke(app, ["evaluate", str(path), "--threshold", "0.5"])
    assert isinstance(result.exception, RaitError) and "has no mention scores" in str(result.exception)
    rows[0]["scores"] = [2, 0.1]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = runner.invoke(app, ["evaluate", str(path)])
    assert isinstance(result.exception, RaitError) and "line 1" in str(result.exception)
    assert "scores" in str(result.exception)


def test_prediction_rows_keep_every_score_and_mark_the_dropped(tiny, tmp_path):
    from rait.inference import predict_records
    from rait.records import Mention, Record

    model, tokenizer = tiny
    predictor = Predictor(model, tokenizer, max_new_tokens=24, decoding="constrained")
    record = Record("r1", TEXT, [Mention("Paris", "location")], source="demo", types=["person", "location"])
    every, chosen = tmp_path / "every.jsonl", tmp_path / "chosen.jsonl"
    predict_records([record], predictor, every, progress=False)
    predict_records([record], predictor, chosen, progress=False, threshold=0.9, multi_label=False)
    rows_every = [json.loads(line) for line in every.read_text().splitlines()]
    rows_chosen = [json.loads(line) for line in chosen.read_text().splitlines()]
    for a, b in zip(rows_every, rows_chosen, strict=True):
        assert a["output"] == b["output"] and a["scores"] == b["scores"] and a["dropped"] == []
        assert set(b["dropped"]) <= set(json.loads(a["output"]))
    again = reselect([QueryPrediction.from_dict(r) for r in rows_every], 0.9, False)
    assert [r.dropped for r in again] == [r["dropped"] for r in rows_chosen]


def test_vllm_scores_come_from_its_top_logprobs(tiny):
    from types import SimpleNamespace

    from rait.inference import VllmPredictor

    _, tokenizer = tiny
    ids = tokenizer.convert_tokens_to_ids
    answer = '["Paris", "Barack Obama"]'
    chain = [*tokenizer(answer, add_special_tokens=False)["input_ids"], stop_token_ids(tokenizer)[0]]
    top = [{token: SimpleNamespace(logprob=0.0)} for token in chain]
    top[0] = {
        ids('["'): SimpleNamespace(logprob=math.log(0.6)),
        ids("["): SimpleNamespace(logprob=math.log(0.2)),
    }
    top[2] = {
        ids('",'): SimpleNamespace(logprob=math.log(0.3)),
        ids('"]'): SimpleNamespace(logprob=math.log(0.1)),
    }
    predictor = object.__new__(VllmPredictor)
    predictor.tokenizer, predictor.stop_repetition, predictor.decoding = tokenizer, True, "free"
    predictor.stop_ids, predictor._vocab, predictor._choices = (
        frozenset(stop_token_ids(tokenizer)),
        None,
        None,
    )
    completion = SimpleNamespace(token_ids=chain, text=answer, finish_reason="stop", logprobs=top)
    assert predictor._answer(completion).scores == pytest.approx((0.75, 0.75), abs=1e-4)  # any rule
    completion.logprobs = None
    assert predictor._answer(completion).scores is None
