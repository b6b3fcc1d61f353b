"""The answer grammar shared by inference and evaluation: an answer to one type question is a JSON list of
mention strings (:func:`format_answer` writes it, :func:`parse_answer_items` reads it under a scoring
protocol), and a generated answer carries why its generation ended (:class:`Answer`, ``FINISH_REASONS``).

Every answer ends for one of ``FINISH_REASONS``: ``stop`` (the model wrote its end-of-turn token),
``length`` (it reached ``max_new_tokens``: the answer may be cut), ``repetition`` (it was caught in a loop,
:func:`rait.inference.stopping.repeats_itself`) or ``dropped`` (cut at its first choice point because its
score was below the caller's threshold: answered ``[]``; only where the answers serve that threshold,
:attr:`rait.inference.transformers.Predictor.min_score`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

PROTOCOLS = ("uniner", "ra-it")
FINISH_REASONS = ("stop", "length", "repetition", "dropped")

_LIST = re.compile(r"\[(.*?)\]")  # upstream: non-greedy, '.' does not cross newlines
_DECODER = json.JSONDecoder()


def format_answer(mentions: Sequence[str]) -> str:
    """The assistant's answer to one type question: a JSON list of mention strings."""
    return json.dumps(list(mentions), ensure_ascii=False)


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is one of ``PROTOCOLS``; otherwise a ValueError naming them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown scoring protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return protocol


def parse_answer_items(text: str, protocol: str = "uniner") -> list[str] | None:
    """The strings of one answer's list exactly as the model wrote them, or ``None`` when it does not parse.

    The list starts the answer (after stripping whitespace) under ``uniner``, or at the first ``[`` followed
    by a ``]`` on its line under ``ra-it``; from there it must be a JSON list of strings on one line.
    (Upstream also turns nested lists into tuples, but its regex stops at the first ``]``, so a nested list
    never parses there either.)"""
    text = text.strip()
    match = _LIST.match(text) if check_protocol(protocol) == "uniner" else _LIST.search(text)
    if match is None:
        return None
    try:
        items, end = _DECODER.raw_decode(text, match.start())
    except (ValueError, RecursionError):  # RecursionError: a degenerate "[[[[...]" answer
        return None
    if not isinstance(items, list) or "\n" in text[match.start() : end]:
        return None
    if not all(isinstance(item, str) for item in items):
        return None
    return items


class Answer(str):
    """A decoded answer (a string) with the reason its generation ended (``finish_reason``) and the
    confidence score of each of its mentions (``scores``, in the order of
    :func:`rait.inference.entities.answer_mentions`; None when the backend gives none)."""

    finish_reason: str = "stop"
    scores: tuple[float, ...] | None = None

    def __new__(cls, text: str, finish_reason: str = "stop", scores: Sequence[float] | None = None):
        answer = super().__new__(cls, text)
        answer.finish_reason = finish_reason
        answer.scores = None if scores is None else tuple(scores)
        return answer


def finish_reason(answer: str) -> str | None:
    """An answer's finish reason; None for a plain string (an answerer that does not report one)."""
    return getattr(answer, "finish_reason", None)
