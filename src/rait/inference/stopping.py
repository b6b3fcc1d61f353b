"""When an answer's generation ends: the length caps and the repetition rule.

Every answer ends for one of :data:`rait.answers.FINISH_REASONS`: ``stop`` (the model wrote its end-of-turn
token), ``length`` (it reached ``max_new_tokens``: the answer may be cut) or ``repetition`` (it was caught in
a loop, :func:`repeats_itself`). Predictors return answers as :class:`rait.answers.Answer` strings carrying
their reason, and prediction stats, ``rait evaluate`` and ``rait report`` count the ``length`` and
``repetition`` ones.

``DEFAULT_MAX_NEW_TOKENS`` (256) cuts at most 0.5% of any registered benchmark's gold answers with
SmolLM2's tokenizer (the most needed: 195 tokens, Yidu; measured by ``benchmarks/gold_answer_lengths.py``,
figures in docs/inference.md); ``PAPER_MAX_NEW_TOKENS`` (1,024) is the RA-IT reference's vLLM ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rait.answers import Answer, finish_reason

DEFAULT_MAX_NEW_TOKENS = 256
PAPER_MAX_NEW_TOKENS = 1024

REPEAT_MIN_TOKENS = 32
REPEAT_MIN_COUNT = 3
REPEAT_MAX_PERIOD = 64


def repeats_itself(
    ids: Sequence[int],
    min_tokens: int = REPEAT_MIN_TOKENS,
    min_count: int = REPEAT_MIN_COUNT,
    max_period: int = REPEAT_MAX_PERIOD,
) -> bool:
    """Whether ``ids`` ends in a loop: for some period ``p <= max_period``, its last
    ``max(min_tokens, min_count * p)`` tokens are one ``p``-token block repeated (token ``i`` equals token
    ``i - p`` throughout). With the defaults a row stops once it has repeated a block of up to 64 tokens
    at least 3 times over at least 32 tokens; no gold answer of the registered benchmarks does that
    (``benchmarks/gold_answer_lengths.py`` checks)."""
    n = len(ids)
    if n < min_tokens:
        return False
    last = ids[-1]
    for period in range(1, min(max_period, n // min_count) + 1):
        span = max(min_tokens, min_count * period)
        if span > n or ids[-1 - period] != last:
            continue
        tail = ids[n - span :]
        if tail[period:] == tail[:-period]:
            return True
    return False


def loop_end(ids: Sequence[int], **rule) -> int | None:
    """The length at which :func:`repeats_itself` (with ``rule``) first holds for a prefix of ``ids`` -- where
    a decoder that checks after every token stops -- or None when it never does."""
    for end in range(1, len(ids) + 1):
        if repeats_itself(ids[:end], **rule):
            return end
    return None


class Continuation(list):
    """Generated token ids (a list) with the reason generation ended (``finish_reason``) and the
    probability of opening each mention at its choice point (``open_probs``,
    :mod:`rait.inference.confidence`)."""

    finish_reason: str = "stop"
    open_probs: tuple[float, ...] = ()

    def __init__(self, ids=(), finish_reason: str = "stop", open_probs: Sequence[float] = ()):
        super().__init__(ids)
        self.finish_reason = finish_reason
        self.open_probs = tuple(open_probs)


def with_finish_reason(text: str, parts: Sequence[str], scores: Sequence[float] | None = None) -> str:
    """``text`` (an answer merged from ``parts``, e.g. the chunks of a long passage) carrying the parts' most
    telling finish reason: ``length`` if any hit the cap, else ``repetition`` if any looped, else ``stop``,
    else ``dropped``; and ``scores`` (its mentions' scores); plain when no part reports a reason."""
    reasons = {finish_reason(part) for part in parts}
    for reason in ("length", "repetition", "stop", "dropped"):
        if reason in reasons:
            return Answer(text, reason, scores)
    return text
