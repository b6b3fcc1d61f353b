"""Golden tests pinning the exact instruction strings (UniNER English, RA-IT Chinese, example turn)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rait.records import Conversation, Mention, Record
from rait.templates import (
    NegativeTypeSampler,
    build_conversation,
    examples_turn,
    format_example_entities,
    training_conversation,
)

GOLDEN = Path(__file__).parent / "fixtures" / "templates"

PASSAGE = Record(
    "p1",
    "Ada Lovelace worked with Charles Babbage in London.",
    [
        Mention("Ada Lovelace", "person", 0, 12),
        Mention("Charles Babbage", "person", 25, 40),
        Mention("London", "location", 44, 50),
    ],
)
EXAMPLES = [
    Record(
        "e1",
        "Alan Turing studied at Cambridge.",
        [Mention("Alan Turing", "person"), Mention("Cambridge", "organization")],
    ),
    Record("e2", "O'Brien visited Paris.", [Mention("O'Brien", "person"), Mention("Paris", "location")]),
]
ZH_PASSAGE = Record(
    "z1", "李白出生于碎叶城。", [Mention("李白", "人名", 0, 2), Mention("碎叶城", "地名", 5, 8)]
)
ZH_EXAMPLES = [Record("ze1", "杜甫住在成都。", [Mention("杜甫", "人名"), Mention("成都", "地名")])]


def golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


def test_vanilla_english_matches_universalner_wording():
    conversation = build_conversation(PASSAGE, types=["person", "location", "date"])
    assert conversation.to_sharegpt() == golden("vanilla_en.json")


def test_ra_it_english_prepends_the_examples_turn():
    conversation = build_conversation(PASSAGE, types=["person"], examples=EXAMPLES)
    assert conversation.to_sharegpt() == golden("ra_it_en.json")


def test_ra_it_chinese_wording():
    conversation = build_conversation(ZH_PASSAGE, types=["人名", "地名"], examples=ZH_EXAMPLES, lang="zh")
    assert conversation.to_messages() == golden("ra_it_zh.json")


def test_example_entities_use_python_literal_style():
    assert format_example_entities(EXAMPLES[1]) == "[{\"O'Brien\": 'person'}, {'Paris': 'location'}]"
    assert examples_turn([], "en") == []


def test_sharegpt_and_messages_round_trip():
    conversation = build_conversation(PASSAGE, examples=EXAMPLES)
    assert Conversation.from_dict(conversation.to_sharegpt()) == conversation
    assert Conversation.from_dict(conversation.to_messages()) == conversation


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        build_conversation(PASSAGE, lang="fr")


def test_negatives_are_absent_types_drawn_by_frequency_and_seeded():
    counts = Counter({"person": 50, "location": 50, "date": 900, "award": 1, "event": 49})
    negatives = NegativeTypeSampler(counts, seed=7).sample(PASSAGE, 2)
    assert len(negatives) == 2 and not {"person", "location"} & set(negatives)
    assert negatives == NegativeTypeSampler(counts, seed=7).sample(PASSAGE, 2)
    draws = Counter(
        NegativeTypeSampler(Counter({"date": 900, "award": 1, "event": 99}), seed=s).sample(PASSAGE, 1)[0]
        for s in range(300)
    )
    assert draws["date"] > 200 and draws["award"] < 10  # proportional to frequency


def test_training_conversation_asks_present_types_then_negatives():
    sampler = NegativeTypeSampler(Counter({"date": 3}), seed=1)
    turns = training_conversation(PASSAGE, sampler, negatives=2).turns
    questions = [t.content for t in turns if t.role == "user"][1:]
    assert questions == [
        "What describes person in the text?",
        "What describes location in the text?",
        "What describes date in the text?",
    ]
    assert turns[-1].content == "[]"
    assert turns[3].content == '["Ada Lovelace", "Charles Babbage"]'
