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


def test_negative_types_follow_the_reference_rule():
    """Per present type one negative with probability 0.5, weighted by count, shuffled in, seeded."""
    counts = Counter({"person": 50, "location": 50, "date": 900, "award": 1, "event": 99})
    sampler = NegativeTypeSampler(counts, seed=7)
    records = [Record(f"r{i}", PASSAGE.text, PASSAGE.mentions) for i in range(2000)]
    drawn = [sampler.question_types(r) for r in records]
    assert all({"person", "location"} <= set(types) for types in drawn)
    negatives = [[t for t in types if t not in ("person", "location")] for types in drawn]
    per_passage = Counter(map(len, negatives))
    # E = P(1 drawn) + P(2 drawn) x (2 - P(both the same type)) = 0.5 + 0.25 x (2 - 0.8196) = 0.795
    assert set(per_passage) == {0, 1, 2} and 0.77 < sum(map(len, negatives)) / len(drawn) < 0.82
    flat = Counter(t for n in negatives for t in n)
    assert flat["date"] > 6 * flat["event"] and flat["award"] < 10  # proportional to counts
    assert sum(types[-1] in ("person", "location") for types in drawn) > 400  # interleaved, not appended
    assert drawn[5] == NegativeTypeSampler(counts, seed=7).question_types(records[5])  # seeded per record
    assert drawn != [NegativeTypeSampler(counts, seed=8).question_types(r) for r in records]
    only_date = NegativeTypeSampler(Counter({"date": 3}), seed=1)
    two = [only_date.question_types(r) for r in records[:200]]
    assert max(t.count("date") for t in two) == 1  # a type drawn twice is asked once
    none = NegativeTypeSampler(counts, seed=7, prob=0.0)
    assert none.question_types(PASSAGE) == ["person", "location"]  # no sampling, no shuffle


def test_training_conversation_keeps_a_sources_own_questions():
    asked = Record(PASSAGE.id, PASSAGE.text, PASSAGE.mentions, types=["location", "date", "person"])
    sampler = NegativeTypeSampler(Counter({"award": 3}), seed=1)
    turns = training_conversation(asked, sampler).turns
    questions = [t.content for t in turns if t.role == "user"][1:]
    assert questions == [
        "What describes location in the text?",
        "What describes date in the text?",
        "What describes person in the text?",
    ]
    assert turns[-3].content == "[]"
    assert turns[-1].content == '["Ada Lovelace", "Charles Babbage"]'


def test_training_conversation_without_a_sampler_asks_present_types():
    turns = training_conversation(PASSAGE).turns
    questions = [t.content for t in turns if t.role == "user"][1:]
    assert questions == ["What describes person in the text?", "What describes location in the text?"]
