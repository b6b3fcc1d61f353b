"""Answers -> located entities.

Answers are parsed with :func:`rait.answers.parse_answer_items` (a malformed answer counts as empty and is
counted) and each mention is located in the passage: **all** its occurrences are returned with character
offsets; a mention not found verbatim is kept with ``start``/``end`` ``None`` and ``found`` ``False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rait.answers import Answer, parse_answer_items
from rait.inference.confidence import SCORE_DIGITS, mention_scores


def answer_mentions(answer: str) -> tuple[list[str], bool]:
    """The mention strings of one answer as the model wrote them (de-duplicated, first-seen order) and
    whether it parsed (:func:`rait.answers.parse_answer_items`); a malformed answer gives ``[]``."""
    items = parse_answer_items(answer)
    if items is None:
        return [], False
    return list(dict.fromkeys(item for item in items if item.strip())), True


def answer_scores(answer: str) -> list[float] | None:
    """The scores of :func:`answer_mentions`' mentions (``answer.scores``), or None when it has none."""
    scores = getattr(answer, "scores", None)
    return None if scores is None else list(scores)


def scored_answer(text: str, finish_reason: str, open_probs) -> Answer:
    """An :class:`Answer` whose mentions are scored from the ``p_open`` of each item's choice point
    (:func:`rait.inference.confidence.mention_scores`); a mention written twice keeps its higher score."""
    items = parse_answer_items(text) or []
    best: dict[str, float] = {}
    for item, score in zip(items, mention_scores(items, open_probs), strict=True):
        if item.strip():
            best[item] = max(best.get(item, 0.0), round(score, SCORE_DIGITS))
    return Answer(text, finish_reason, list(best.values()))


# scripts written without spaces between words (Thai, Lao, Myanmar, Hangul jamo, Khmer; CJK, kana and Hangul
# syllables; from U+F900 on CJK compatibility, full-width forms and the CJK extensions): a boundary between
# two of their characters is a word boundary
_UNSPACED = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1100, 0x11FF), (0x1780, 0x17FF), (0x2E80, 0xD7FF))


def is_word_char(char: str) -> bool:
    """Whether ``char`` is a letter or digit of a script that separates words with spaces (a mention that
    starts or ends between two such characters cuts through a word)."""
    code = ord(char)
    return char.isalnum() and code < 0xF900 and not any(low <= code <= high for low, high in _UNSPACED)


def _occurrences(haystack: str, needle: str) -> list[tuple[int, int]]:
    spans, start = [], haystack.find(needle)
    while start != -1:
        spans.append((start, start + len(needle)))
        start = haystack.find(needle, start + len(needle))
    return spans


def locate(text: str, mention: str) -> list[tuple[int, int]]:
    """Character spans of **all** non-overlapping occurrences of ``mention`` in ``text``, left to right.

    Occurrences that do not cut through a word (:func:`is_word_char` on both sides) are preferred; when
    there are none, any verbatim occurrence; then case-insensitive ones. ``[]`` when not found."""
    if not mention:
        return []

    def whole_words(spans):
        return [
            (s, e)
            for s, e in spans
            if not (s > 0 and is_word_char(text[s - 1]) and is_word_char(text[s]))
            and not (e < len(text) and is_word_char(text[e]) and is_word_char(text[e - 1]))
        ]

    exact = _occurrences(text, mention)
    if exact:
        return whole_words(exact) or exact
    lowered, needle = text.lower(), mention.lower()
    if len(lowered) == len(text) and len(needle) == len(mention):
        folded = _occurrences(lowered, needle)
        return whole_words(folded) or folded
    return []


def located_entities(
    text: str, entity_type: str, mentions: Iterable[str], scores: Sequence[float] | None = None
) -> list[dict]:
    """Entities ``{"text", "type", "start", "end", "found"}`` for one type's mentions: one per occurrence
    (``text`` is the passage's own characters); an occurrence inside a longer mention of the same type is
    dropped; a mention not in the passage is kept once with ``start``/``end`` ``None``, ``found`` False.
    With ``scores`` (one per mention) each entity also gets its mention's ``score`` (the best of the
    mentions found at the same span)."""
    mentions = list(mentions)
    scores = [None] * len(mentions) if scores is None else list(scores)
    spans: dict[tuple[int, int], float | None] = {}
    missing: list[tuple[str, float | None]] = []
    for mention, score in zip(mentions, scores, strict=True):
        found = locate(text, mention)
        for span in found:
            spans[span] = score if spans.get(span) is None else max(spans[span], score)
        if not found:
            missing.append((mention, score))
    kept = sorted(
        (s, e) for s, e in spans if not any(s2 <= s and e <= e2 and (s2, e2) != (s, e) for s2, e2 in spans)
    )
    entities = [
        {"text": text[s:e], "type": entity_type, "start": s, "end": e, "found": True} for s, e in kept
    ]
    entities += [
        {"text": m, "type": entity_type, "start": None, "end": None, "found": False} for m, _ in missing
    ]
    if any(score is not None for score in scores):
        for entity, score in zip(
            entities, [spans[span] for span in kept] + [s for _, s in missing], strict=True
        ):
            entity["score"] = score
    return entities


def entities_from_answers(text: str, types: Sequence[str], answers: Sequence[str]) -> tuple[list[dict], int]:
    """All located entities of a passage (found ones by position, then not-found ones) and the number of
    malformed answers among ``answers``."""
    entities: list[dict] = []
    malformed = 0
    for entity_type, answer in zip(types, answers, strict=True):
        mentions, ok = answer_mentions(answer)
        malformed += not ok
        entities += located_entities(text, entity_type, mentions, answer_scores(answer))
    entities.sort(key=lambda e: (not e["found"], e["start"] or 0, -(e["end"] or 0)))
    return entities, malformed


def select_mentions(
    text: str,
    mentions: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float] | None],
    threshold: float | None = None,
    multi_label: bool = True,
) -> list[list[str]]:
    """The mentions kept of each type's answer in one passage (``mentions[t]``, scored ``scores[t]``; None:
    unscored, kept): :func:`rait.inference.confidence.select_entities` on every occurrence of every mention,
    a mention kept when one of its occurrences is."""
    from rait.inference.confidence import select_entities

    if threshold is None and multi_label:
        return [list(m) for m in mentions]
    entities = []
    for t, (type_mentions, type_scores) in enumerate(zip(mentions, scores, strict=True)):
        for m, mention in enumerate(type_mentions):
            score = None if type_scores is None else type_scores[m]
            spans = locate(text, mention) or [(None, None)]
            for start, end in spans:
                entity = {"text": mention, "start": start, "end": end, "found": start is not None}
                entities.append({**entity, "type": t, "score": score, "mention": m})
    kept = {(e["type"], e["mention"]) for e in select_entities(entities, threshold, multi_label)}
    return [[x for m, x in enumerate(ms) if (t, m) in kept] for t, ms in enumerate(mentions)]
