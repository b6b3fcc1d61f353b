"""Instruction templates: UniversalNER-style vanilla conversations and the RA-IT example turn.

English strings follow UniversalNER; Chinese strings and the example turn follow the RA-IT paper."""

from __future__ import annotations

import bisect
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

from rait.records import Conversation, Record, Turn


@dataclass(frozen=True, slots=True)
class Wording:
    """The fixed strings of one language's template."""

    passage: str  # %s = passage text
    passage_ack: str
    question: str  # %s = entity type
    examples_intro: str  # %s = the examples, one per line pair
    example: str  # %s, %s = example text, example entities
    examples_ack: str


WORDINGS: dict[str, Wording] = {
    "en": Wording(
        passage="Text: %s",
        passage_ack="I've read this text.",
        question="What describes %s in the text?",
        examples_intro="Here are some examples of named entity recognition:\n%s",
        example="Text: %s\nEntity: %s",
        examples_ack="I've read these examples.",
    ),
    "zh": Wording(
        passage="文本： %s",
        passage_ack="我已读完这段文本。",
        question='文本中属于"%s"的实体有哪些？',
        examples_intro="以下是一些命名实体识别的例子：\n%s",
        example="文本：%s\n实体：%s",
        examples_ack="我已读完这些例子。",
    ),
}


def wording(lang: str) -> Wording:
    try:
        return WORDINGS[lang]
    except KeyError:
        raise ValueError(f"unknown language {lang!r}; choose one of {sorted(WORDINGS)}") from None


def format_answer(mentions: Sequence[str]) -> str:
    """The assistant's answer to one type question: a JSON list of mention strings."""
    return json.dumps(list(mentions), ensure_ascii=False)


def format_example_entities(record: Record) -> str:
    """A retrieved example's entities in the RA-IT paper's Python-literal form ``[{'m': 'type'}, ...]``."""
    return repr([{m.text: m.type} for m in record.mentions])


def examples_turn(examples: Sequence[Record], lang: str = "en") -> list[Turn]:
    """The RA-IT context turn (user examples + assistant acknowledgement); empty when no examples."""
    if not examples:
        return []
    w = wording(lang)
    body = "\n".join(w.example % (ex.text, format_example_entities(ex)) for ex in examples)
    return [Turn("user", w.examples_intro % body), Turn("assistant", w.examples_ack)]


def prompt_turns(text: str, examples: Sequence[Record] = (), lang: str = "en") -> list[Turn]:
    """The shared prefix of every question about ``text``: optional examples turn, then the passage turn."""
    w = wording(lang)
    return [*examples_turn(examples, lang), Turn("user", w.passage % text), Turn("assistant", w.passage_ack)]


def question_turn(entity_type: str, lang: str = "en") -> Turn:
    return Turn("user", wording(lang).question % entity_type)


def build_conversation(
    record: Record,
    types: Sequence[str] | None = None,
    examples: Sequence[Record] = (),
    lang: str = "en",
    conversation_id: str | None = None,
) -> Conversation:
    """A full training/eval conversation: prefix turns, then one question and gold answer per type.

    ``types`` defaults to ``record.query_types()``; a type with no mention is answered ``[]``."""
    turns = prompt_turns(record.text, examples, lang)
    for entity_type in record.query_types() if types is None else types:
        turns.append(question_turn(entity_type, lang))
        turns.append(Turn("assistant", format_answer(record.answers(entity_type))))
    return Conversation(id=conversation_id or record.id, turns=turns)


class NegativeTypeSampler:
    """Draws absent entity types with probability proportional to their frequency in a dataset.

    Sampling is without replacement and seeded per record (``seed`` + record id), so the negatives of a
    record do not depend on which other records are processed or in what order."""

    def __init__(self, type_counts: Counter[str], seed: int = 42):
        self.types = sorted(type_counts)
        self.weights = [type_counts[t] for t in self.types]
        self.seed = seed

    @classmethod
    def from_records(cls, records: Iterable[Record], seed: int = 42) -> NegativeTypeSampler:
        """Count each type once per passage it occurs in."""
        counts: Counter[str] = Counter()
        for record in records:
            counts.update({m.type for m in record.mentions})
        return cls(counts, seed)

    def sample(self, record: Record, count: int) -> list[str]:
        """Up to ``count`` types that have no mention in ``record``."""
        present = {m.type for m in record.mentions}
        candidates = [
            (t, w) for t, w in zip(self.types, self.weights, strict=True) if t not in present and w > 0
        ]
        rng = random.Random(f"{self.seed}:{record.id}")
        chosen: list[str] = []
        while candidates and len(chosen) < count:
            cumulative = list(accumulate(w for _, w in candidates))
            index = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
            chosen.append(candidates.pop(min(index, len(candidates) - 1))[0])
        return chosen


def training_conversation(
    record: Record,
    sampler: NegativeTypeSampler | None = None,
    negatives: int = 2,
    examples: Sequence[Record] = (),
    lang: str = "en",
) -> Conversation:
    """A training conversation: every type present in the passage, then ``negatives`` sampled absent types."""
    types = list(dict.fromkeys(m.type for m in record.mentions))
    if sampler is not None and negatives > 0:
        types += sampler.sample(record, negatives)
    return build_conversation(record, types=types, examples=examples, lang=lang)
