"""Typed records shared by every stage: passages with entity mentions, and conversations."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

DEFAULT_SEED = 42  # the seed of every sampling step, LoRA init and data order when none is given


@dataclass(frozen=True, slots=True)
class Mention:
    """One entity mention. ``start``/``end`` are character offsets into the passage (end exclusive),
    or ``None`` when the source gives only the mention string."""

    text: str
    type: str
    start: int | None = None
    end: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class Record:
    """A passage and its gold mentions.

    ``types`` is the label set the passage is queried for (including types with no mention, as in a
    benchmark or a UniNER eval file); ``None`` means "the types of its mentions". ``tokens`` is set only
    when a tagged file's tokens contain spaces (TweetNER7's ``{@Atom Araullo@}``): the text is them joined
    by single spaces, and a BIO writer needs them to restore the token boundaries."""

    id: str
    text: str
    mentions: list[Mention] = field(default_factory=list)
    types: list[str] | None = None
    source: str = ""
    tokens: list[str] | None = None

    def query_types(self) -> list[str]:
        """The types to ask about: ``types`` if set, else the mention types; first-seen order, no repeats."""
        if self.types is not None:
            return list(dict.fromkeys(self.types))
        return list(dict.fromkeys(m.type for m in self.mentions))

    def answers(self, entity_type: str) -> list[str]:
        """Mention strings of ``entity_type`` in passage order, de-duplicated."""
        return list(dict.fromkeys(m.text for m in self.mentions if m.type == entity_type))

    def to_dict(self) -> dict:
        data = {
            "id": self.id,
            "text": self.text,
            "mentions": [m.to_dict() for m in self.mentions],
            "types": self.types,
            "source": self.source,
        }
        if self.tokens is not None:
            data["tokens"] = self.tokens
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        return cls(
            id=str(data["id"]),
            text=data["text"],
            mentions=[Mention(**m) for m in data.get("mentions", [])],
            types=data.get("types"),
            source=data.get("source", ""),
            tokens=data.get("tokens"),
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """One conversation turn; ``role`` is ``"user"`` or ``"assistant"``."""

    role: str
    content: str


@dataclass(slots=True)
class Conversation:
    """An instruction-tuning conversation, exportable as ShareGPT/UniNER JSON or chat messages."""

    id: str
    turns: list[Turn]

    def to_sharegpt(self) -> dict:
        names = {"user": "human", "assistant": "gpt"}
        return {
            "id": self.id,
            "conversations": [{"from": names[t.role], "value": t.content} for t in self.turns],
        }

    def to_messages(self) -> dict:
        return {"id": self.id, "messages": [{"role": t.role, "content": t.content} for t in self.turns]}

    @classmethod
    def from_dict(cls, data: dict) -> Conversation:
        """Read either shape (``conversations`` with from/value, or ``messages`` with role/content)."""
        roles = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}
        if "conversations" in data:
            turns = [Turn(roles[t["from"]], t["value"]) for t in data["conversations"]]
        else:
            turns = [Turn(roles[t["role"]], t["content"]) for t in data["messages"]]
        return cls(id=str(data.get("id", "")), turns=turns)


@dataclass(slots=True)
class QueryPrediction:
    """One (passage, type) query of a benchmark with its gold mentions and the model's raw answer.

    A predictions file is jsonl of these (``rait predict`` writes it, ``rait evaluate`` scores it).
    ``gold_spans``/``predicted_spans`` (``[start, end]`` pairs) are optional, for span-level scoring.
    ``finish_reason`` (optional): why generation ended, ``stop``, ``length`` (the answer hit the cap) or
    ``repetition`` (:mod:`rait.inference.stopping`). ``scores`` (optional): the confidence score of each
    mention of ``output`` (:mod:`rait.inference.confidence`, in the order of
    :func:`rait.inference.entities.answer_mentions`), every mention's, also those dropped; ``dropped``
    (optional): the mentions of ``output`` the run's threshold or one type per span removed
    (``predicted_spans`` holds only the kept ones'; ``rait evaluate`` scores the kept ones)."""

    benchmark: str
    record_id: str
    type: str
    gold: list[str]
    output: str
    text: str = ""
    gold_spans: list[list[int]] | None = None
    predicted_spans: list[list[int]] | None = None
    finish_reason: str | None = None
    scores: list[float] | None = None
    dropped: list[str] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> QueryPrediction:
        return cls(**data)
