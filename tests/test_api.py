"""The GLiNER-like API: rait.api.NER over a predictor whose generation is scripted with known answers."""

from __future__ import annotations

import pytest

from rait.api import NER, _as_pool
from rait.chat import stop_token_ids
from rait.errors import RaitError
from rait.inference import Predictor
from rait.inference.entities import is_word_char
from rait.records import Mention, Record
from rait.retrieval.pool import ExamplePool
from rait.templates import question_turn
from rait.testing import save_tiny_model, tiny_model_and_tokenizer

EN_TEXT = "Marie Curie won the Nobel Prize in Physics; Curie later won the Nobel Prize in Chemistry."
ZH_TEXT = "马云于1999年在杭州创立了阿里巴巴集团，后来杭州成了电商之都。"
SCRIPT = {
    (EN_TEXT, "person"): '["Marie Curie", "Curie"]',
    (EN_TEXT, "award"): '["Nobel Prize in Physics", "Nobel Prize in Chemistry", "Fields Medal"]',
    (EN_TEXT, "location"): "There are no locations.",
    (ZH_TEXT, "人物"): '["马云"]',
    (ZH_TEXT, "地点"): '["杭州"]',
    (ZH_TEXT, "组织机构"): '["阿里巴巴集团"]',
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ScriptedPredictor(Predictor):
    """A real Predictor whose greedy decoding returns the token ids of scripted answers: it recovers each
    row's passage and question from the prompt token ids, so the whole path (templates, encoding, prefix
    grouping, decoding, parsing, locating) runs for real. Records the decoded prefixes it saw."""

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.prefixes: list[str] = []

    def _greedy(self, prefixes, owner, suffixes, passages=None):
        self.prefixes += [self.tokenizer.decode(p) for p in prefixes]
        outputs = []
        for row, suffix in zip(owner, suffixes, strict=True):
            prompt = self.tokenizer.decode(prefixes[row] + suffix)
            answer = "[]"
            for (text, entity_type), scripted in SCRIPT.items():
                lang = "zh" if text == ZH_TEXT else "en"
                if text in prompt and question_turn(entity_type, lang).content in prompt:
                    answer = scripted
            ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
            outputs.append(ids + stop_token_ids(self.tokenizer))
        return outputs


@pytest.fixture(scope="module")
def ner():
    model, tokenizer = tiny_model_and_tokenizer()
    return NER(ScriptedPredictor(model, tokenizer))


def test_english_entities_with_all_occurrences_and_flags(ner):
    entities = ner.predict_entities(EN_TEXT, ["person", "award", "location"])
    for e in entities:
        if e["found"]:
            assert EN_TEXT[e["start"] : e["end"]] == e["text"]
    assert [(e["text"], e["type"], e["start"]) for e in entities if e["found"]] == [
        ("Marie Curie", "person", 0),
        ("Nobel Prize in Physics", "award", 20),
        ("Curie", "person", 44),
        ("Nobel Prize in Chemistry", "award", 64),
    ]
    assert [e for e in entities if not e["found"]] == [
        {"text": "Fields Medal", "type": "award", "start": None, "end": None, "found": False}
    ]


def test_chinese_passage_end_to_end(ner):
    entities = ner.predict_entities(ZH_TEXT, ["人物", "地点", "组织机构"])
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in entities] == [
        ("马云", "人物", 0, 2),
        ("杭州", "地点", 9, 11),
        ("阿里巴巴集团", "组织机构", 14, 20),
        ("杭州", "地点", 23, 25),
    ]
    assert "文本： " + ZH_TEXT in ner.predictor.prefixes[-1]  # the Chinese template was chosen


def test_batch_equals_single_calls_and_counts_malformed(ner):
    before = (ner.n_queries, ner.n_malformed)
    batch = ner.batch_predict_entities([EN_TEXT, "Nothing to see.", EN_TEXT], ["person", "location"])
    assert batch[0] == batch[2] == ner.predict_entities(EN_TEXT, ["person", "location"])
    assert batch[1] == []
    assert (ner.n_queries - before[0], ner.n_malformed - before[1]) == (8, 3)  # "location" is malformed


def test_explicit_examples_are_shown_to_the_model(ner):
    example = Record("ex", "Pierre Curie was French.", [Mention("Pierre Curie", "person")])
    entities = ner.predict_entities(EN_TEXT, ["person"], examples=[example])
    assert [e["text"] for e in entities] == ["Marie Curie", "Curie"]
    assert "Pierre Curie was French." in ner.predictor.prefixes[-1]
    assert "{'Pierre Curie': 'person'}" in ner.predictor.prefixes[-1]


class FakePool:
    def __init__(self):
        self.calls = []

    def retrieve(self, texts, k=2, strategy="nn", **kwargs):
        self.calls.append((list(texts), k, strategy, kwargs.get("bm25_threshold")))
        return [
            [Record("pool-0", "Ada Lovelace wrote notes.", [Mention("Ada Lovelace", "person")])]
            for _ in texts
        ]


@pytest.mark.parametrize(
    ("mode", "strategy", "threshold"), [("out-domain", "nn_bm25", 15.0), ("in-domain", "nn", None)]
)
def test_pool_examples_are_retrieved_per_text(mode, strategy, threshold):
    model, tokenizer = tiny_model_and_tokenizer()
    pool = FakePool()
    ner = NER(ScriptedPredictor(model, tokenizer), pool=pool, pool_mode=mode, k=3, bm25_threshold=15.0)
    ner.batch_predict_entities([EN_TEXT, ZH_TEXT], ["person"], examples="pool")
    assert [(c[0], c[1], c[2]) for c in pool.calls] == [([EN_TEXT, ZH_TEXT], 3, strategy)]
    assert pool.calls[0][3] == threshold
    assert all("Ada Lovelace wrote notes." in p for p in ner.predictor.prefixes[-2:])


def test_pool_errors(ner):
    with pytest.raises(RaitError, match="needs a pool"):
        ner.predict_entities(EN_TEXT, ["person"], examples="pool")
    with pytest.raises(RaitError, match="not 'retrieved'"):
        ner.predict_entities(EN_TEXT, ["person"], examples="retrieved")
    with pytest.raises(RaitError, match="pool_mode"):
        NER(ner.predictor, pool=FakePool(), pool_mode="nearest")


def test_a_list_of_records_becomes_an_example_pool(tmp_path, monkeypatch):
    monkeypatch.setenv("RAIT_CACHE_DIR", str(tmp_path))
    records = [
        Record(f"z{i}", text, [Mention("杭州", "地点")])
        for i, text in enumerate(["杭州很美。", "我在杭州工作。"])
    ]
    pool = _as_pool(records, None, "hashing")
    assert isinstance(pool, ExamplePool) and pool.lang == "zh"
    assert pool.retrieve(["他住在杭州。"], k=1, strategy="nn")[0][0].id in {"z0", "z1"}


def test_from_pretrained_loads_a_model_dir_and_answers(tmp_path):
    ner = NER.from_pretrained(str(save_tiny_model(tmp_path / "tiny")), max_new_tokens=3)
    entities = ner.predict_entities("Barack Obama was born in Honolulu.", ["person", "location"])
    assert isinstance(ner.predictor, Predictor) and ner.n_queries == 2
    assert all(set(e) == {"text", "type", "start", "end", "found"} for e in entities)


def test_from_pretrained_decodes_constrained_by_default(tmp_path):
    """A random model's answers: under the default constrained-words decoding every entity is in the text, at
    word boundaries, none malformed; free decoding of the same model gives malformed answers."""
    path = str(save_tiny_model(tmp_path / "tiny"))
    text = "Barack Obama was born in Honolulu, Hawaii, and served as the president."
    types = ["person", "location", "date", "organization"]
    ner = NER.from_pretrained(path, max_new_tokens=16)
    assert ner.predictor.decoding == "constrained-words"
    entities = ner.predict_entities(text, types, threshold=0, multi_label=True)  # a random model: low scores
    assert entities and ner.n_malformed == 0
    assert all(e["found"] and text[e["start"] : e["end"]] == e["text"] for e in entities)
    inside = [(text[i - 1], text[i]) for e in entities for i in (e["start"], e["end"]) if 0 < i < len(text)]
    assert not any(is_word_char(a) and is_word_char(b) for a, b in inside)
    free = NER.from_pretrained(path, max_new_tokens=16, decoding="free")
    free.predict_entities(text, types)
    assert free.n_malformed > 0


def test_ner_is_exported_lazily_from_the_package():
    import rait

    assert rait.NER is NER


def test_types_none_is_refused_and_repeated_types_are_asked_once(ner):
    with pytest.raises(RaitError, match="not None"):
        ner.predict_entities("Ada met Bo.", None)
    once = ner.predict_entities("Ada met Bo.", ["person"])
    assert ner.predict_entities("Ada met Bo.", "person") == once  # one type, not six letters
    assert ner.predict_entities("Ada met Bo.", ["person", "person"]) == once
    with pytest.raises(RaitError, match="not a string"):
        ner.batch_predict_entities(["Ada met Bo."], "person")


@pytest.mark.parametrize(
    ("texts", "error", "words"),
    [
        ("Marie Curie", TypeError, "not a string"),  # not eleven one-letter texts
        (None, TypeError, "not NoneType"),
        (b"Marie Curie", TypeError, "not bytes"),
        (3, TypeError, "not int"),
        (["Ada", None], TypeError, "texts[1] must be a string, not NoneType"),
        (["Ada", b"Bo"], TypeError, "texts[1] must be a string, not bytes"),
        (
            ["Ada", "Marie \ud800 Curie"],
            ValueError,
            "texts[1] is not valid Unicode (a lone surrogate at character 6)",
        ),
    ],
)
def test_bad_texts_are_clear_type_and_value_errors(ner, texts, error, words):
    with pytest.raises(error) as caught:
        ner.batch_predict_entities(texts, ["person"])
    assert words in str(caught.value)


def test_bad_single_texts_and_types_are_clear_errors(ner):
    with pytest.raises(TypeError, match="text must be a string, not int"):
        ner.predict_entities(3, ["person"])
    with pytest.raises(ValueError, match=r"type 'per\\udfffson' is not valid Unicode"):
        ner.predict_entities("Ada met Bo.", ["per\udfffson"])
