"""Answers -> located entities.

Answers are parsed with :func:`rait.answers.parse_answer_items` (a malformed answer counts as empty and is
counted) and each mention is located in the passage: **all** its occurrences are returned with character
offsets; a mention not found verbatim is kept with ``start``/``end`` ``None`` and ``found`` ``False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rait.answers import parse_answer_items


def answer_mentions(answer: str) -> tuple[list[str], bool]:
    """The mention strings of one answer as the model wrote them (de-duplicated, first-seen order) and
    whether it parsed (:func:`rait.answers.parse_answer_items`); a malformed answer gives ``[]``."""
    items = parse_answer_items(answer)
    if items is None:
        return [], False
    return list(dict.fromkeys(item for item in items if item.strip())), True


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


def located_entities(text: str, entity_type: str, mentions: Iterable[str]) -> list[dict]:
    """Entities ``{"text", "type", "start", "end", "found"}`` for one type's mentions: one per occurrence
    (``text`` is the passage's own characters); an occurrence inside a longer mention of the same type is
    dropped; a mention not in the passage is kept once with ``start``/``end`` ``None``, ``found`` False."""
    spans: list[tuple[int, int]] = []
    missing: list[str] = []
    for mention in mentions:
        found = locate(text, mention)
        spans.extend(found)
        if not found:
            missing.append(mention)
    kept = sorted(
        {(s, e) for s, e in spans if not any(s2 <= s and e <= e2 and (s2, e2) != (s, e) for s2, e2 in spans)}
    )
    entities = [
        {"text": text[s:e], "type": entity_type, "start": s, "end": e, "found": True} for s, e in kept
    ]
    entities += [
        {"text": m, "type": entity_type, "start": None, "end": None, "found": False} for m in missing
    ]
    return entities


def entities_from_answers(text: str, types: Sequence[str], answers: Sequence[str]) -> tuple[list[dict], int]:
    """All located entities of a passage (found ones by position, then not-found ones) and the number of
    malformed answers among ``answers``."""
    entities: list[dict] = []
    malformed = 0
    for entity_type, answer in zip(types, answers, strict=True):
        mentions, ok = answer_mentions(answer)
        malformed += not ok
        entities += located_entities(text, entity_type, mentions)
    entities.sort(key=lambda e: (not e["found"], e["start"] or 0, -(e["end"] or 0)))
    return entities, malformed
