"""Confidence scores of mentions, a score threshold and one type per span.

**The score.** An answer is a JSON list written token by token. Before each mention the model makes one
choice: open another mention, or close the list. That choice is made by the token that first writes the
byte committing to a new mention -- ``["`` at the start, or ``",`` / ``,`` after a mention -- and at that
*choice point* the model's next-token distribution says how likely opening was:

    p_open = P(tokens that open a mention) / (P(tokens that open a mention) + P(other tokens the grammar
    allows there: closing the list, or a token that defers the choice, such as ``[`` or a lone ``"``))

summed over the tokenizer's whole vocabulary (:class:`ChoiceTokens` sorts it once per tokenizer). Every
mention of an answer is scored with ``p_open`` at the answer's first choice point, the probability that the
model answers with mentions rather than ``[]`` (``SCORE_RULE = "first"``); the alternatives, a mention's own
choice point (``"open"``) and the product of the choice points up to it (``"product"``), scored lower on
held-out sentences, where the rule, the threshold and one type per span were chosen (docs/inference.md,
``benchmarks/confidence_defaults.py``). The probabilities
come from the logits the decoding step computes anyway: no extra model pass, and a forced token (one the
grammar allows alone) is never a choice point.

**Selection.** :func:`select_entities` drops entities scored below ``threshold`` and, unless
``multi_label``, keeps one type per span: entities are taken best score first and one that overlaps an
entity already kept (of any type) is dropped (GLiNER's ``flat_ner``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rait.errors import RaitError

# the score of a mention from the p_open of the choice points up to it: "first" (the answer's first, the
# same for all its mentions), "open" (its own) or "product" (its own and every earlier one's)
# chosen on held-out sentences (benchmarks/confidence_defaults.py, results/confidence/heldout.json)
SCORE_RULE = "first"
SCORE_RULES = ("first", "open", "product")
DEFAULT_THRESHOLD = 0.92
DEFAULT_MULTI_LABEL = False
SCORE_DIGITS = 4  # scores are rounded to this many decimals where they are shown or written

# structural states of an answer, for the choice points (any content inside strings; whitespace allowed
# between items, as a JSON reader would)
START, OPEN, STRING, ESCAPE, AFTER, COMMA, CLOSED, BROKEN = range(8)
_CHOICE_STATES = (START, OPEN, STRING, AFTER)
_SPACE = frozenset(b" \t")


# structural bytes: (state, byte) -> (next state, whether it commits to a new mention)
_STEPS = {
    (START, ord("[")): (OPEN, False),
    (OPEN, ord('"')): (STRING, True),
    (OPEN, ord("]")): (CLOSED, False),
    (AFTER, ord(",")): (COMMA, True),
    (AFTER, ord("]")): (CLOSED, False),
    (COMMA, ord('"')): (STRING, False),
}


def _walk(state: int, data: bytes) -> tuple[int, bool]:
    """The state after ``data`` and whether it committed to a new mention (a ``"`` opening one, or the
    ``,`` after one); ``BROKEN`` when ``data`` cannot continue a JSON list of strings."""
    committed = False
    for byte in data:
        if state == STRING:
            state = AFTER if byte == ord('"') else ESCAPE if byte == ord("\\") else STRING
        elif state == ESCAPE:
            state = STRING
        elif (state, byte) in _STEPS:
            state, commits = _STEPS[state, byte]
            committed |= commits
        elif state == CLOSED or byte not in _SPACE:  # nothing may follow the list in the answer's tokens
            return BROKEN, committed
    return state, committed


class ChoiceTokens:
    """For each state where the next token can open a mention, the token ids that open one and the other
    token ids the grammar allows there (built once per tokenizer from its byte strings; a token inside a
    string counts only when it starts by closing the string, i.e. with ``"``)."""

    def __init__(self, token_bytes: Sequence[bytes | None]):
        self.token_bytes = token_bytes
        self.sets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for state in _CHOICE_STATES:
            opens, others = [], []
            for token_id, data in enumerate(token_bytes):
                if not data or state == STRING and data[:1] != b'"':
                    continue
                after, committed = _walk(state, data)
                if committed:
                    opens.append(token_id)
                elif after != BROKEN:
                    others.append(token_id)
            self.sets[state] = (torch.tensor(opens, dtype=torch.long), torch.tensor(others, dtype=torch.long))
        self._on: dict[torch.device, dict] = {}

    def open_probability(self, state: int, logits: torch.Tensor) -> float:
        """``p_open`` at a choice point in ``state`` from one row's next-token ``logits``."""
        sets = self._on.get(logits.device)
        if sets is None:
            sets = {s: (o.to(logits.device), x.to(logits.device)) for s, (o, x) in self.sets.items()}
            self._on[logits.device] = sets
        opens, others = sets[STRING if state == ESCAPE else state]
        row = logits.float()
        top = torch.logsumexp(row[opens], 0)
        rest = torch.logsumexp(row[others], 0) if len(others) else row.new_tensor(-math.inf)
        return float(torch.sigmoid(top - rest))


class ChoiceRecorder:
    """The choice-point probabilities of a batch of decoded rows: feed it each token a row writes
    (:meth:`observe`); :attr:`probs` holds each row's ``p_open``, one per mention opened, in order."""

    def __init__(self, tokens: ChoiceTokens, rows: int):
        self.tokens = tokens
        self.states = [START] * rows
        self.probs: list[list[float]] = [[] for _ in range(rows)]

    def observe(self, row: int, token: int, logits: torch.Tensor | None) -> None:
        """Record that ``row`` wrote ``token`` (not a stop token) from next-token ``logits`` (one row; None
        for a token the grammar forced, which never opens a mention)."""
        state = self.advance(row, token)
        if state is not None and logits is not None:
            self.probs[row].append(self.tokens.open_probability(state, logits))

    def advance(self, row: int, token: int) -> int | None:
        """Move ``row`` past ``token``; the state it was in when ``token`` opens a mention (a choice point:
        the caller records ``p_open``), else None."""
        state = self.states[row]
        token_bytes = self.tokens.token_bytes
        data = token_bytes[token] if token < len(token_bytes) else None
        if state in (CLOSED, BROKEN) or not data:
            return None
        self.states[row], committed = _walk(state, data)
        return state if committed else None


def mention_scores(items: Sequence[str], probs: Sequence[float], rule: str | None = None) -> list[float]:
    """Scores of an answer's mentions (``items``, in the order written) from the ``p_open`` of each item's
    choice point (:class:`ChoiceRecorder`) by ``rule`` (:data:`SCORE_RULES`; None: :data:`SCORE_RULE`): the
    first item's for all (``first``), its own (``open``) or the product up to it (``product``). An item with
    no recorded choice point (an answer cut and closed after a loop) takes the last one's."""
    rule = rule or SCORE_RULE
    scores, running = [], 1.0
    for index in range(len(items)):
        p = probs[index] if index < len(probs) else (probs[-1] if probs else 1.0)
        running *= p
        scores.append({"first": probs[0] if probs else 1.0, "open": p, "product": running}[rule])
    return scores


def check_threshold(threshold: float | None) -> float | None:
    """``threshold`` when it is None or a number in [0, 1], else a clear error."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise RaitError(f"threshold must be a number from 0 to 1, not {threshold!r}")
    return float(threshold)


def check_multi_label(multi_label) -> bool:
    """``multi_label`` when it is a bool, else a clear error."""
    if not isinstance(multi_label, bool):
        raise RaitError(f"multi_label must be true or false, not {multi_label!r}")
    return multi_label


def _overlaps(a: dict, b: dict) -> bool:
    if a["found"] and b["found"]:
        return a["start"] < b["end"] and b["start"] < a["end"]
    return not a["found"] and not b["found"] and a["text"].casefold() == b["text"].casefold()


def select_entities(
    entities: list[dict], threshold: float | None = None, multi_label: bool = False
) -> list[dict]:
    """The entities to return: those with ``score`` at or above ``threshold`` (None: all); unless
    ``multi_label``, one type per span: best score first (then the longer span, then input order), an entity
    overlapping one already kept is dropped; a mention not found in the text conflicts with another not-found
    mention of the same text. Entities without a score count as scored 1. Input order is kept."""
    kept = [e for e in entities if threshold is None or _score(e) >= threshold]
    if multi_label:
        return kept
    order = sorted(
        range(len(kept)),
        key=lambda i: (-_score(kept[i]), -((kept[i]["end"] or 0) - (kept[i]["start"] or 0)), i),
    )
    chosen: list[int] = []
    for index in order:
        if not any(_overlaps(kept[index], kept[other]) for other in chosen):
            chosen.append(index)
    return [kept[i] for i in sorted(chosen)]


def _score(entity: dict) -> float:
    score = entity.get("score")
    return 1.0 if score is None else score
