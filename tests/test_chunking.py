"""Long texts: sentence chunking on a token budget, offsets mapped back, merging at chunk edges; in rait.NER
(single and batched, per-text types) and in `rait predict`."""

from __future__ import annotations

import json
import logging
import re

import pytest

from rait.api import NER
from rait.errors import RaitError
from rait.inference import PassageQuery, PredictConfig, run_predict
from rait.inference.chunking import (
    ChunkedAnswerer,
    chunk_spans,
    merge_chunk_answers,
    merge_chunk_entities,
    sentence_spans,
)
from rait.records import Mention, Record
from rait.testing import lookup_predictor, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KNOWN = {
    "person": ["Marie Curie", "Barack Obama", "Steven Spielberg"],
    "location": ["Paris", "Honolulu", "Boston"],
}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture()
def predictor():
    return lookup_predictor(KNOWN, max_new_tokens=32)


def long_text(n: int = 40) -> str:
    sentences = [
        "Marie Curie moved to Paris to study physics.",
        "Barack Obama was born in Honolulu, Hawaii.",
        "Steven Spielberg filmed a movie near Boston.",
        "The weather was cold and nobody went outside that week.",
    ]
    return " ".join(sentences[i % len(sentences)] for i in range(n))


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_sentence_spans_english_chinese_and_lines():
    text = '  He said "Hi." Then left!  What?\nNew line 3.5 stays\n\n'
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        'He said "Hi."',
        "Then left!",
        "What?",
        "New line 3.5 stays",
    ]
    zh = "北京是首都。上海很大！你去过吗？"
    assert [zh[s:e] for s, e in sentence_spans(zh)] == ["北京是首都。", "上海很大！", "你去过吗？"]


def test_short_text_is_one_chunk(tokenizer):
    assert chunk_spans("Paris is nice.", tokenizer, 50) == [(0, 14)]


@pytest.mark.parametrize("budget", [40, 60, 100])
def test_chunks_are_whole_sentences_within_the_budget(tokenizer, budget):
    text = long_text()
    sentences = sentence_spans(text)
    assert max(n_tokens(tokenizer, text[s:e]) for s, e in sentences) <= 40  # every sentence fits
    spans = chunk_spans(text, tokenizer, budget)
    assert len(spans) > 1
    starts, ends = {s for s, _ in sentences}, {e for _, e in sentences}
    for s, e in spans:
        assert n_tokens(tokenizer, text[s:e]) <= budget
        assert s in starts and e in ends  # cut only at sentence boundaries
    # every sentence is in exactly one chunk, in order
    assert [s for s, _ in sentences if any(cs <= s < ce for cs, ce in spans)] == [s for s, _ in sentences]
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize("budget", [40, 60])  # the text is tokenized in several segments
def test_a_sentence_over_the_budget_becomes_overlapping_windows(tokenizer, budget):
    text = " ".join(f"word{i}" for i in range(600))  # one sentence, no punctuation
    spans = chunk_spans(text, tokenizer, budget, overlap=8)
    assert len(spans) > 3
    for (_, e), (s2, e2) in zip(spans, spans[1:], strict=False):
        assert s2 < e < e2  # overlap, and progress
        assert text[e] == " " and text[s2 - 1] == " "  # windows end before a space, start at a word
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(n_tokens(tokenizer, text[s:e]) <= budget for s, e in spans)
    words = {f"word{i}" for i in range(600)}
    assert words == {w for s, e in spans for w in text[s:e].split()}  # every word whole, none cut


def test_a_multi_megabyte_one_line_text_is_chunked(tokenizer):
    text = "Paris " * (3_000_000 // 6)
    spans = chunk_spans(text, tokenizer, 1000)
    assert spans[-1][1] == len(text.rstrip())
    assert max(n_tokens(tokenizer, text[s:e]) for s, e in spans[:3]) <= 1000


def test_budget_is_the_context_minus_prompt_and_answer(predictor):
    chunker = ChunkedAnswerer(predictor, max_chunk_tokens=None)
    query = PassageQuery("x", ("person", "location"), (), "en")
    prefix, suffixes = predictor._token_ids(predictor.tokenizer, PassageQuery("", query.types, (), "en"))
    expected = 1024 - len(prefix) - max(map(len, suffixes)) - predictor.max_new_tokens
    assert chunker.budget(query) == expected
    example = Record("e", "Pierre Curie lived in Paris. " * 10, [Mention("Pierre Curie", "person")])
    assert chunker.budget(PassageQuery("x", query.types, (example,), "en")) < expected
    assert ChunkedAnswerer(predictor, max_chunk_tokens=64).budget(query) == 64
    with pytest.raises(RaitError, match="max_chunk_tokens"):
        ChunkedAnswerer(predictor, max_chunk_tokens=3)


def test_merge_chunk_answers():
    assert merge_chunk_answers([["[]", "bad"]], 2) == ["[]", "bad"]  # one chunk: unchanged
    merged = merge_chunk_answers([['["Paris", "Rome"]', "bad"], ['["Rome", "北京"]', "worse"]], 2)
    assert json.loads(merged[0]) == ["Paris", "Rome", "北京"]
    assert merged[1] == "bad"  # no chunk parsed: one malformed answer


def test_merge_chunk_entities_shifts_dedupes_and_drops_cut_mentions():
    first = [
        {"text": "Marie", "type": "person", "start": 10, "end": 15, "found": True},  # cut at the edge
        {"text": "Ghost", "type": "person", "start": None, "end": None, "found": False},
    ]
    second = [
        {"text": "Marie Curie", "type": "person", "start": 0, "end": 11, "found": True},
        {"text": "Marie", "type": "location", "start": 0, "end": 5, "found": True},  # other type: kept
        {"text": "Ghost", "type": "person", "start": None, "end": None, "found": False},
        {"text": "Paris", "type": "location", "start": 20, "end": 25, "found": True},
    ]
    third = [{"text": "Paris", "type": "location", "start": 5, "end": 10, "found": True}]  # overlap dup
    merged = merge_chunk_entities([(0, first), (10, second), (25, third)])
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in merged] == [
        ("Marie Curie", "person", 10, 21),
        ("Marie", "location", 10, 15),
        ("Paris", "location", 30, 35),
        ("Ghost", "person", None, None),
    ]


def test_ner_chunks_a_long_text_and_maps_offsets_back(predictor, caplog):
    text = long_text(60)
    ner = NER(predictor, max_chunk_tokens=48)
    with caplog.at_level(logging.INFO, logger="rait.inference.chunking"):
        [found] = ner.extract([text], ["person", "location"])
    assert found.chunked and len(found.chunks) > 3
    assert "split into" in caplog.text
    assert all(len(p) < len(text) for p in predictor.passages)  # the model never saw the whole text
    for e in found.entities:
        assert e["found"] and text[e["start"] : e["end"]] == e["text"]
    expected = sorted(
        (m.start(), m.group(), t)
        for t, names in KNOWN.items()
        for name in names
        for m in re.finditer(name, text)
    )
    assert sorted((e["start"], e["text"], e["type"]) for e in found.entities) == expected
    assert ner.n_chunked == 1 and ner.n_queries == 2 * len(found.chunks)
    # predict_entities returns the same entities
    assert ner.predict_entities(text, ["person", "location"]) == found.entities


def test_short_text_is_not_chunked(predictor):
    ner = NER(predictor, max_chunk_tokens=48)
    [found] = ner.extract(["Marie Curie lives in Paris."], ["person"])
    assert not found.chunked and found.chunks == [(0, 27)]
    assert [e["text"] for e in found.entities] == ["Marie Curie"]


def test_batch_with_per_text_types_runs_one_predictor_call_per_batch(predictor):
    ner = NER(predictor)
    texts = ["Marie Curie lives in Paris.", "Barack Obama visited Boston.", "Steven Spielberg."]
    batch = ner.batch_predict_entities(texts, [["person"], ["location"], ["person", "location"]])
    assert [[e["text"] for e in entities] for entities in batch] == [
        ["Marie Curie"],
        ["Boston"],
        ["Steven Spielberg"],
    ]
    assert predictor.iter_calls == 1
    ner.batch_predict_entities(texts * 3, ["person"], batch_size=4)
    assert predictor.iter_calls == 1 + 3
    with pytest.raises(RaitError, match="2 lists of types for 3 texts"):
        ner.batch_predict_entities(texts, [["person"], ["location"]])
    with pytest.raises(RaitError, match="not a string"):
        ner.batch_predict_entities(texts, "person")


class FakePool:
    def __init__(self):
        self.calls = []

    def retrieve(self, texts, k=2, strategy="nn", **kwargs):
        self.calls.append((strategy, kwargs.get("bm25_threshold")))
        return [[Record("p", "Boston is cold.", [Mention("Boston", "location")])] for _ in texts]


def test_examples_mode_per_call_overrides_the_pool_mode(predictor):
    pool = FakePool()
    ner = NER(predictor, pool=pool, pool_mode="out-domain", bm25_threshold=12.0)
    for mode in ("pool", "in-domain", "out-domain", "none", None):
        [found] = ner.extract(["Paris."], ["location"], examples=mode)
        assert found.n_examples == (0 if mode in ("none", None) else 1)
    assert pool.calls == [("nn_bm25", 12.0), ("nn", None), ("nn_bm25", 12.0)]


def test_rait_predict_chunks_long_passages(tmp_path, predictor):
    text = long_text(40)
    source = tmp_path / "docs.txt"
    source.write_text(f"{text}\nMarie Curie lives in Paris.\n", encoding="utf-8")
    config = PredictConfig(
        output=tmp_path / "preds.jsonl", input=source, types=["person", "location"], max_chunk_tokens=48
    )
    stats = run_predict(config, progress=False, answerer=predictor)
    assert (stats.n_predicted, stats.n_chunked, stats.n_malformed) == (2, 1, 0)
    rows = [json.loads(line) for line in config.output.read_text().splitlines()]
    long_person = next(r for r in rows if r["record_id"] == "line-1" and r["type"] == "person")
    assert json.loads(long_person["output"]) == KNOWN["person"]
    assert len(long_person["predicted_spans"]) == sum(text.count(m) for m in KNOWN["person"])
    short = next(r for r in rows if r["record_id"] == "line-2" and r["type"] == "person")
    assert short["output"] == '["Marie Curie"]'  # a passage that fits is answered as before


def test_decoding_per_call_is_restored_and_checked(predictor):
    ner = NER(predictor)
    seen = []
    greedy = predictor._greedy
    predictor._greedy = lambda *args, **kwargs: (seen.append(predictor.decoding), greedy(*args, **kwargs))[1]
    assert ner.predict_entities("Paris.", ["location"], decoding="constrained")[0]["text"] == "Paris"
    assert seen == ["constrained"] and predictor.decoding == "free"
    with pytest.raises(RaitError, match="unknown decoding 'beam'"):
        ner.predict_entities("Paris.", ["location"], decoding="beam")
