"""Teacher output -> (mention, type) pairs, filtering (the RA-IT reference's rules, or rait's stricter
ones), and ensemble voting."""

from __future__ import annotations

import ast
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

Pair = tuple[str, str]

# Types that name no type at all (compared case-insensitively).
PLACEHOLDER_TYPES = frozenset(
    {
        "n/a",
        "na",
        "none",
        "null",
        "nil",
        "unknown",
        "not applicable",
        "not_applicable",
        "type",
        "entity type",
        "type of entity",
        "type of entity 1",
        "实体类别",
        "实体1的类别",
        "类别",
        "无",
        "未知",
    }
)
EXAMPLES_PER_REASON = 5

FILTER_RULES = ("ra-it", "rait")
# The RA-IT reference's filter (3.ner_annotation_filter.py): invalid types, compared lowercased. Its list
# lacks a comma after "entity type", so Python joins it with "entity" into "entity typeentity" and drops
# neither; rait lists both, as the reference meant.
RA_IT_INVALID_TYPES = frozenset(
    {"实体", "实体类别", "其他", "无", "无类别", "未定义", "entity_type", "entity type", "entity"}
    | {"else", "none", "na", "misc"}
)
RA_IT_MAX_MENTION = 20  # characters (Chinese) or space-separated words (other languages)
RA_IT_STRIPPED_PAIRS = ("《》", "【】", "[]")


def parse_output(output: str | list) -> tuple[list[Pair], int] | None:
    """``(pairs, malformed_items)`` from a teacher's answer, or ``None`` when it cannot be parsed.

    Text answers hold one list (outermost ``[`` ... ``]``, fences and prose around it ignored) read as JSON
    or a Python literal; items are ``(mention, type)`` 2-sequences or ``{mention: type, ...}`` objects.
    Items of any other shape are counted as malformed. Structured answers are lists of such items."""
    if isinstance(output, str):
        start, end = output.find("["), output.rfind("]")
        if start < 0 or end < start:
            return None
        body = output[start : end + 1]
        try:
            value = json.loads(body)
        except ValueError:
            try:
                value = ast.literal_eval(body)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
    else:
        value = output
    if not isinstance(value, list):
        return None
    pairs: list[Pair] = []
    malformed = 0
    for item in value:
        if isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            pairs.append((item[0], item[1]))
        elif (
            isinstance(item, dict)
            and item
            and all(isinstance(k, str) and isinstance(v, str) for k, v in item.items())
        ):
            pairs.extend(item.items())
        else:
            malformed += 1
    return pairs, malformed


def strip_brackets(mention: str) -> str:
    """The mention without one enclosing pair of 《》, 【】 or [] (the reference's last filter step)."""
    for left, right in RA_IT_STRIPPED_PAIRS:
        if mention.startswith(left) and mention.endswith(right):
            mention = mention[1:-1]
    return mention


def drop_reason(
    mention: str,
    entity_type: str,
    passage: str,
    max_type_chars: int = 50,
    rules: str = "ra-it",
    lang: str = "zh",
) -> str | None:
    """Why a pair is dropped, or ``None`` to keep it. ``rules="ra-it"``: the RA-IT reference's filter
    (mention at most 20 characters for Chinese / words otherwise, in the passage ignoring case, type not
    in its invalid list); ``"rait"``: rait's stricter checks (type length and placeholders, mention equal
    to its type, mention in the passage as written). Both drop empty mentions and types (the reference
    keeps an empty mention, as ``"" in passage`` holds)."""
    if not mention:
        return "empty_mention"
    if not entity_type:
        return "empty_type"
    if rules == "ra-it":
        size = len(mention) if lang == "zh" else len(mention.split(" "))
        if size > RA_IT_MAX_MENTION:
            return "mention_too_long"
        if mention.lower() not in passage.lower():
            return "mention_not_in_passage"
        if entity_type.lower() in RA_IT_INVALID_TYPES:
            return "invalid_type"
        return None
    if len(entity_type) > max_type_chars:
        return "type_too_long"
    if entity_type.casefold() in PLACEHOLDER_TYPES:
        return "placeholder_type"
    if mention.casefold() == entity_type.casefold():
        return "mention_equals_type"
    if mention not in passage:
        return "mention_not_in_passage"
    return None


@dataclass(slots=True)
class FilterStats:
    """Counts for one teacher: answers parsed or not, pairs proposed, kept and dropped by reason, and the
    first few dropped items per reason as examples."""

    outputs: int = 0
    unparseable: int = 0
    proposed: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict]] = field(default_factory=dict)

    def note(self, reason: str, example: dict) -> None:
        self.dropped[reason] += 1
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < EXAMPLES_PER_REASON:
            bucket.append(example)

    def to_dict(self) -> dict:
        return {
            "outputs": self.outputs,
            "unparseable_outputs": self.unparseable,
            "pairs_proposed": self.proposed,
            "pairs_kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "examples": dict(sorted(self.examples.items())),
        }


def filter_output(
    output: str | list,
    passage: str,
    stats: FilterStats,
    chunk_id: str = "",
    max_type_chars: int = 50,
    rules: str = "ra-it",
    lang: str = "zh",
) -> list[Pair] | None:
    """The kept, de-duplicated pairs of one answer (``None`` if unparseable), counting everything.
    ``rules`` as :func:`drop_reason`; ``ra-it`` then strips one pair of 《》/【】/[] from kept mentions,
    ``rait`` strips whitespace before checking."""
    if rules not in FILTER_RULES:
        raise ValueError(f"unknown filter rules {rules!r}; choose one of {', '.join(FILTER_RULES)}")
    stats.outputs += 1
    parsed = parse_output(output)
    if parsed is None:
        stats.unparseable += 1
        stats.note("unparseable_output", {"chunk": chunk_id, "output": str(output)[:300]})
        return None
    pairs, malformed = parsed
    stats.proposed += len(pairs) + malformed
    for _ in range(malformed):
        stats.note("malformed_item", {"chunk": chunk_id})
    kept: dict[Pair, None] = {}
    for mention, entity_type in pairs:
        pair = (mention.strip(), entity_type.strip()) if rules == "rait" else (mention, entity_type)
        reason = drop_reason(*pair, passage, max_type_chars, rules, lang)
        if reason is None and rules == "ra-it":
            pair = (strip_brackets(pair[0]), pair[1])
        if reason is None and pair in kept:
            reason = "duplicate"
        if reason is not None:
            stats.note(reason, {"chunk": chunk_id, "mention": pair[0], "type": pair[1]})
        else:
            kept[pair] = None
    stats.kept += len(kept)
    return list(kept)


def resolve_min_agree(spec: str | int | float, teachers: int) -> int:
    """How many teachers must propose a pair: ``"majority"`` (more than half), ``"all"``, a count
    (``2``, ``"2"``) or a fraction of the teachers (``0.5``, ``"0.5"``; ``1.0`` means all)."""
    if teachers < 1:
        raise ValueError("need at least one teacher")
    if spec == "majority":
        return teachers // 2 + 1
    if spec == "all":
        return teachers
    if isinstance(spec, str):
        try:
            spec = float(spec) if "." in spec else int(spec)
        except ValueError:
            raise ValueError(
                f"bad agreement threshold {spec!r}: use majority, all, a count or a fraction"
            ) from None
    if isinstance(spec, float):
        if not 0.0 < spec <= 1.0:
            raise ValueError(f"agreement fraction must be in (0, 1], got {spec}")
        return max(1, math.ceil(spec * teachers - 1e-9))
    if not 1 <= spec <= teachers:
        raise ValueError(f"agreement count must be between 1 and {teachers}, got {spec}")
    return spec


def vote(answers: Sequence[Sequence[Pair] | None], min_agree: int) -> list[Pair]:
    """Pairs proposed by at least ``min_agree`` teachers (``None`` = a teacher with no usable answer,
    which votes for nothing). Types match case-insensitively; the kept spelling is the first teacher's.
    Order: first-proposal order over teachers in sequence."""
    votes: Counter = Counter()
    spelling: dict[tuple[str, str], Pair] = {}
    for answer in answers:
        own: dict[tuple[str, str], Pair] = {}
        for mention, entity_type in answer or ():
            own.setdefault((mention, entity_type.casefold()), (mention, entity_type))
        for key, pair in own.items():
            spelling.setdefault(key, pair)
            votes[key] += 1
    seen: set[tuple[str, str]] = set()
    kept: list[Pair] = []
    for answer in answers:
        for mention, entity_type in answer or ():
            key = (mention, entity_type.casefold())
            if key not in seen and votes[key] >= min_agree:
                seen.add(key)
                kept.append(spelling[key])
    return kept
