"""The inference interface: :class:`PassageQuery` (one passage and its type questions) and :class:`Answerer`,
the base of the backends (:class:`rait.inference.transformers.Predictor`,
:class:`rait.inference.vllm.VllmPredictor`).

A passage's prompt is the same for all of its types up to the question (optional RA-IT examples turn,
passage turn, acknowledgement): :meth:`Answerer._token_ids` gives that shared prefix and one question
suffix per type. Token ids come only from :func:`rait.chat.encode_turns`, exactly as in training.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rait.chat import encode_turns, stop_token_ids
from rait.errors import RaitError
from rait.records import Record
from rait.templates import prompt_turns, question_turn

# free: the paper's greedy decoding; constrained: answers copy passage substrings
# (rait.inference.constrained); constrained-words: the same, with strings starting and ending only at word
# boundaries
DECODINGS = ("free", "constrained", "constrained-words")
DEFAULT_BATCH_SIZE = 128  # type questions decoded together
DEFAULT_DECODING = "constrained-words"  # the recommended decoding of rait.NER, rait serve and rait predict


def check_decoding(decoding: str, max_new_tokens: int | None = None) -> None:
    """Refuses an unknown decoding, and a constrained one with a cap too small for the answer ``[]``."""
    if decoding not in DECODINGS:
        raise RaitError(f"unknown decoding {decoding!r}; choose one of {', '.join(DECODINGS)}")
    if decoding != "free" and max_new_tokens is not None and max_new_tokens < 2:
        raise RaitError(f"{decoding} decoding needs max_new_tokens of at least 2 (the answer '[]')")


@dataclass(frozen=True, slots=True)
class PassageQuery:
    """One passage to question: its entity types, optional in-context examples, template language
    (``None``: the predictor's)."""

    text: str
    types: tuple[str, ...]
    examples: tuple[Record, ...] = ()
    lang: str | None = None


class Answerer(ABC):
    """Base of the inference backends: subclasses implement ``iter_answers``; the rest builds on it."""

    lang: str
    system_ids: tuple[int, ...] = ()  # the system turn (rait.chat.encode_system) every prompt starts with
    decoding: str = "free"
    _vocab = None  # rait.inference.constrained.TokenVocab of the backend's tokenizer, built on first use
    _choices = None  # rait.inference.confidence.ChoiceTokens of the same tokenizer

    @abstractmethod
    def iter_answers(self, queries: Sequence[PassageQuery]) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(index, raw answers, one per type)`` for every query, in input order."""

    def answer_many(self, queries: Sequence[PassageQuery]) -> list[list[str]]:
        """Raw answers for each passage, one per type, in order."""
        answers: list[list[str]] = [[] for _ in queries]
        for index, passage_answers in self.iter_answers(queries):
            answers[index] = passage_answers
        return answers

    def answer(
        self, text: str, types: Sequence[str], examples: Sequence[Record] = (), lang: str | None = None
    ) -> list[str]:
        """Raw answers (decoded model output) to each type's question about ``text``."""
        return self.answer_many([PassageQuery(text, tuple(types), tuple(examples), lang)])[0]

    @property
    def _word_bounds(self) -> bool:
        """Whether copied strings keep to word boundaries (the ``constrained-words`` decoding)."""
        return self.decoding == "constrained-words"

    def _token_vocab(self):
        """The :class:`rait.inference.constrained.TokenVocab` of the backend's tokenizer (built once)."""
        from rait.inference.constrained import TokenVocab

        if self._vocab is None:
            self._vocab = TokenVocab(self.tokenizer, stop_token_ids(self.tokenizer))
        return self._vocab

    def _choice_tokens(self):
        """The :class:`rait.inference.confidence.ChoiceTokens` of the backend's tokenizer (built once)."""
        from rait.inference.confidence import ChoiceTokens

        if self._choices is None:
            self._choices = ChoiceTokens(self._token_vocab().token_bytes)
        return self._choices

    def _copy_constraint(self, text: str):
        """The copy constraint (:class:`rait.inference.constrained.PassageConstraint`) of ``text`` for this
        decoding, over the backend's ``tokenizer``."""
        from rait.inference.constrained import PassageConstraint

        return PassageConstraint(text, self._token_vocab(), self._word_bounds)

    def _token_ids(self, tokenizer, query: PassageQuery) -> tuple[list[int], list[list[int]]]:
        lang = query.lang or self.lang
        prefix = [*self.system_ids, *encode_turns(tokenizer, prompt_turns(query.text, query.examples, lang))]
        suffixes = [
            encode_turns(tokenizer, [question_turn(t, lang)], add_generation_prompt=True) for t in query.types
        ]
        return prefix, suffixes
