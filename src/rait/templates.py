"""Instruction templates: UniversalNER-style vanilla conversations and the RA-IT example turn.

English strings follow UniversalNER; Chinese strings and the example turn follow the RA-IT paper."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rait.answers import format_answer
from rait.records import DEFAULT_SEED, Conversation, Record, Turn


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
    """The RA-IT reference's negative types (``4.gen_it_data.py``): for each type present in a passage,
    one negative with probability ``prob``; negatives drawn from the types absent from the passage with
    weights = their mention counts over the whole dataset (``random.sample(..., counts=...)``, so a type
    can be drawn twice); duplicates collapsed; present and negative types shuffled together.

    Seeded per record (``seed`` + record id), so the types of a record do not depend on which other
    records are processed or in what order."""

    def __init__(self, type_counts: Counter[str], seed: int = DEFAULT_SEED, prob: float = 0.5):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"negative-type probability must be in [0, 1], got {prob}")
        self.types = sorted(t for t in type_counts if type_counts[t] > 0)
        self.weights = [type_counts[t] for t in self.types]
        self.seed = seed
        self.prob = prob

    @classmethod
    def from_records(
        cls, records: Iterable[Record], seed: int = DEFAULT_SEED, prob: float = 0.5
    ) -> NegativeTypeSampler:
        """Count each distinct (mention, type) pair of a passage once, as the reference's filtered data."""
        counts: Counter[str] = Counter()
        for record in records:
            counts.update(t for _, t in dict.fromkeys((m.text, m.type) for m in record.mentions))
        return cls(counts, seed, prob)

    def question_types(self, record: Record) -> list[str]:
        """The record's present types (first-seen order) and its negatives, shuffled together; with
        ``prob`` 0, the present types in order (the reference without negative sampling)."""
        positives = list(dict.fromkeys(m.type for m in record.mentions))
        if self.prob == 0:
            return positives
        rng = random.Random(f"{self.seed}:{record.id}")
        count = sum(rng.random() < self.prob for _ in positives)
        present = set(positives)
        pool = [(t, w) for t, w in zip(self.types, self.weights, strict=True) if t not in present]
        count = min(count, len(pool))
        negatives = rng.sample([t for t, _ in pool], count, counts=[w for _, w in pool]) if count else []
        types = positives + negatives
        rng.shuffle(types)
        return list(dict.fromkeys(types))


def training_conversation(
    record: Record,
    sampler: NegativeTypeSampler | None = None,
    examples: Sequence[Record] = (),
    lang: str = "en",
) -> Conversation:
    """A training conversation. A record that lists its own query types (``record.types``: a source that
    already is conversations, such as Pile-NER as released, or a benchmark split) keeps them, in their
    order, negatives included; otherwise its present types plus the ``sampler``'s negatives (none without
    a sampler)."""
    if record.types is not None:
        types = list(record.types)
    elif sampler is not None:
        types = sampler.question_types(record)
    else:
        types = list(dict.fromkeys(m.type for m in record.mentions))
    return build_conversation(record, types=types, examples=examples, lang=lang)
