"""The spaCy component ``rait_ner`` (rait.integrations.spacy): spans, ents, scores, batching, Chinese."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

spacy = pytest.importorskip("spacy")

from rait.api import NER  # noqa: E402
from rait.errors import RaitError  # noqa: E402
from rait.integrations.spacy import FACTORY, RaitNER  # noqa: E402
from rait.testing import lookup_predictor, save_tiny_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KNOWN = {
    "person": ["Barack Obama", "Obama"],
    "location": ["Honolulu", "Hawaii"],
    "人物": ["马云"],
    "地点": ["杭州"],
    "组织机构": ["阿里巴巴集团"],
}
EN_TEXT = "Barack Obama was born in Honolulu, Hawaii."
ZH_TEXT = "马云于1999年在杭州创立了阿里巴巴集团。"


class FixedNER:
    """A stand-in for :class:`rait.NER` that gives fixed entities (with scores) scored at least the
    threshold it is asked (a missing score counts as 1), every type, and records its calls and thresholds."""

    def __init__(self, entities: list[dict]):
        self.entities = entities
        self.calls: list[tuple] = []
        self.thresholds: list[float] = []

    def _kept(self, threshold, multi_label) -> list[dict]:
        assert multi_label is True  # every type: the component chooses one per span
        self.thresholds.append(threshold)
        return [e for e in self.entities if e.get("score", 1) >= threshold]

    def predict_entities(self, text, types, threshold=None, multi_label=None):
        self.calls.append(("one", text))
        return self._kept(threshold, multi_label)

    def batch_predict_entities(self, texts, types, batch_size=32, threshold=None, multi_label=None):
        self.calls.append(("batch", tuple(texts), batch_size))
        return [self._kept(threshold, multi_label) for _ in texts]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return str(save_tiny_model(tmp_path_factory.mktemp("spacy") / "tiny"))


@pytest.fixture(scope="module")
def lookup_ner():
    return NER(lookup_predictor(KNOWN))


def _add(nlp, tiny_dir, **config):
    """Add the component with the tiny model (the caller may swap its ``ner`` for a scripted one)."""
    return nlp.add_pipe(FACTORY, config={"model": tiny_dir, "types": ["person", "location"], **config})


def test_english_ents_and_spans_with_all_occurrences(tiny_dir, lookup_ner):
    nlp = spacy.blank("en")
    _add(nlp, tiny_dir).ner = lookup_ner
    doc = nlp(EN_TEXT)
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Barack Obama", "person"),
        ("Honolulu", "location"),
        ("Hawaii", "location"),
    ]
    assert list(doc.spans["rait"]) == list(doc.ents)
    assert all(s._.score is None for s in doc.spans["rait"])


def test_chinese_on_a_blank_zh_pipeline(tiny_dir, lookup_ner):
    nlp = spacy.blank("zh")
    _add(nlp, tiny_dir, types=["人物", "地点", "组织机构"]).ner = lookup_ner
    doc = nlp(ZH_TEXT)
    expected = [("马云", "人物"), ("杭州", "地点"), ("阿里巴巴集团", "组织机构")]
    assert [(e.text, e.label_) for e in doc.ents] == expected
    assert [(e.start_char, e.end_char) for e in doc.ents] == [(0, 2), (9, 11), (14, 20)]


def test_nlp_pipe_batches_through_batch_predict_entities(tiny_dir):
    nlp = spacy.blank("en")
    fixed = FixedNER([{"text": "a", "type": "x", "start": 0, "end": 1, "found": True}])
    _add(nlp, tiny_dir, batch_size=4).ner = fixed
    docs = list(nlp.pipe(["a b", "a c", "a d"], batch_size=2))
    assert [d.ents[0].text for d in docs] == ["a", "a", "a"]
    assert fixed.calls == [("batch", ("a b", "a c"), 4), ("batch", ("a d",), 4)]


def test_overlaps_keep_the_best_score_and_one_type_per_span(tiny_dir):
    text = "New York City is big"
    entities = [
        {"text": "New York", "type": "state", "start": 0, "end": 8, "found": True, "score": 0.9},
        {"text": "New York City", "type": "city", "start": 0, "end": 13, "found": True, "score": 0.6},
        {"text": "New York City", "type": "place", "start": 0, "end": 13, "found": True, "score": 0.7},
        {"text": "big", "type": "size", "start": 17, "end": 20, "found": True, "score": 0.2},
    ]
    nlp = spacy.blank("en")
    fixed = _add(nlp, tiny_dir).ner = FixedNER(entities)
    doc = nlp(text)
    expected = [("New York", "state", 0.9), ("big", "size", 0.2)]
    assert [(e.text, e.label_, e._.score) for e in doc.ents] == expected
    assert {(s.text, s.label_): s._.score for s in doc.spans["rait"]} == {
        ("New York", "state"): 0.9,
        ("New York City", "city"): 0.6,
        ("New York City", "place"): 0.7,
        ("big", "size"): 0.2,
    }
    nlp.get_pipe(FACTORY).threshold = 0.65
    doc = nlp(text)
    assert [(s.text, s.label_) for s in doc.spans["rait"]] == [
        ("New York", "state"),
        ("New York City", "place"),
    ]
    assert fixed.thresholds == [0, 0.65]  # the model is asked at the component's threshold (cut short below)


def test_without_scores_the_longest_then_first_span_wins(tiny_dir):
    entities = [
        {"text": "York", "type": "a", "start": 4, "end": 8, "found": True},
        {"text": "New York", "type": "b", "start": 0, "end": 8, "found": True},
        {"text": "York City", "type": "c", "start": 4, "end": 13, "found": True},
        {"text": "Paris", "type": "d", "start": None, "end": None, "found": False},
    ]
    nlp = spacy.blank("en")
    _add(nlp, tiny_dir).ner = FixedNER(entities)
    assert [(e.text, e.label_) for e in nlp("New York City is big").ents] == [("York City", "c")]
    entities[2]["end"] = 8  # c is now "York": "New York" is the longest
    assert [(e.text, e.label_) for e in nlp("New York City is big").ents] == [("New York", "b")]


def test_offsets_inside_a_token_expand_to_the_whole_token(tiny_dir):
    nlp = spacy.blank("en")
    _add(nlp, tiny_dir).ner = FixedNER([{"text": "Obam", "type": "person", "start": 7, "end": 11}])
    assert [e.text for e in nlp(EN_TEXT).ents] == ["Obama"]


def test_the_tiny_model_runs_for_real_through_the_component(tiny_dir):
    nlp = spacy.blank("en")
    component = _add(nlp, tiny_dir)
    assert isinstance(component, RaitNER) and isinstance(component.ner, NER)
    doc = nlp(EN_TEXT)
    assert all(EN_TEXT[s.start_char : s.end_char] == s.text for s in doc.spans["rait"])
    assert set(doc.ents) <= set(doc.spans["rait"])


def test_a_saved_pipeline_loads_with_the_component(tiny_dir, tmp_path):
    nlp = spacy.blank("zh")
    _add(nlp, tiny_dir, types=["人物"], decoding="constrained")
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    component = loaded.get_pipe(FACTORY)
    assert (component.types, component.ner.lang, component.ner.predictor.decoding) == (
        ["人物"],
        "zh",
        "constrained",
    )


def test_bad_config_is_one_clear_error(tiny_dir):
    with pytest.raises(RaitError, match='"types" must be a non-empty list'):
        spacy.blank("en").add_pipe(FACTORY, config={"model": tiny_dir, "types": []})
    nlp = spacy.blank("en")
    _add(nlp, tiny_dir, threshold=0.5).ner = FixedNER([{"text": "a", "type": "x", "start": 0, "end": 1}])
    with pytest.raises(RaitError, match='"threshold" needs entity scores'):
        nlp("a b")


def test_the_factory_is_declared_as_a_spacy_entry_point():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["spacy_factories"][FACTORY]
    assert target == "rait.integrations.spacy:make_rait_ner"
    installed = {e.name: e.value for e in importlib.metadata.entry_points(group="spacy_factories")}
    if FACTORY not in installed:
        pytest.skip("this install of rait predates the entry point (pip install -e . again)")
    assert installed[FACTORY] == target


@pytest.mark.slow
def test_the_builtin_model_in_a_blank_english_pipeline():
    nlp = spacy.blank("en")
    nlp.add_pipe(FACTORY, config={"types": ["person", "location"]})
    doc = nlp(
        "Barack Obama was born in Honolulu, Hawaii, and later served as President of the United States."
    )
    found = {(e.text, e.label_) for e in doc.ents}
    assert {("Barack Obama", "person"), ("Honolulu", "location"), ("Hawaii", "location")} <= found
