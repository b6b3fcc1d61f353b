"""Guessing a file's format from its name and first items, and a text's language from its characters."""

from __future__ import annotations

import re
from pathlib import Path

from rait.data.formats.reading import _Bad, _json_items, _json_value, _lines, _read_text
from rait.data.formats.registry import LOAD_FORMATS
from rait.data.formats.tagged import _TAG, _is_docstart, _split_char, _split_weibo
from rait.errors import DataError

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def detect_lang(text: str) -> str:
    """``"zh"`` when at least a fifth of the non-space characters are CJK ideographs, else ``"en"``."""
    chars = [c for c in text if not c.isspace()]
    return "zh" if chars and len(_CJK.findall(text)) * 5 >= len(chars) else "en"


def _format_from_keys(keys: set[str]) -> str | None:
    rules = [
        ({"id", "text", "mentions"}, "rait"),
        ({"entity_list"}, "entity-list-jsonl"),
        ({"sentence", "label"}, "boson"),
        ({"tagName", "input"}, "pile-qa"),
        ({"conversations"}, "uniner"),
        ({"messages"}, "uniner"),
        ({"sentence", "entities"}, "gliner"),
        ({"text", "entities"}, "skyner"),
        ({"tokens", "ner_tags"}, "tokens-tags"),
        ({"tokens", "tags"}, "tokens-tags"),
    ]
    return next((fmt for needed, fmt in rules if needed <= keys), None)


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its extension and first items; DataError when it cannot tell."""
    fmt = guess_format(path)
    if fmt is None:
        raise DataError(path, f"cannot tell the format; pass one of {', '.join(LOAD_FORMATS)}")
    return fmt


def guess_format(path: str | Path) -> str | None:
    """:func:`detect_format`, but None when the file is readable and not in any known format."""
    path = Path(path)
    if path.suffix == ".ann" or (path.is_dir() and any(path.glob("*.ann"))):
        return "brat"
    if path.is_dir():
        raise DataError(path, "is a directory, not a data file")
    if path.suffix == ".txt" and path.with_suffix(".ann").is_file():
        return "brat"
    if path.name.endswith(".bmes"):
        return "bmes"
    text = _read_text(path)
    if path.suffix in (".json", ".jsonl"):
        fmt = _detect_json(path)
    elif text.lstrip()[:1] in ("[", "{"):  # JSON, or a tagged file whose first token starts with a bracket
        try:
            fmt = _detect_json(path)
        except DataError:
            if (fmt := _detect_tagged(text)) is None:
                raise
    else:
        fmt = None
    return fmt or _detect_tagged(text)


def _detect_json(path: Path) -> str | None:
    first = next(_json_items(path), None)
    if first is None:
        raise DataError(path, "file is empty: no records")
    try:
        obj = _json_value(first.raw)
    except _Bad as bad:
        raise DataError(path, bad.message, line=first.line) from None
    return _format_from_keys(set(obj)) if isinstance(obj, dict) else None


def _detect_tagged(text: str) -> str | None:
    lines = [line for line in _lines(text[:100_000])[:500] if line.strip() and not _is_docstart(line)][:100]
    if not lines:
        return None
    if any("|||" in line for line in lines):
        return "cmeee"
    tabbed = [line.split("\t") for line in lines]
    if all(len(f) == 2 for f in tabbed):
        if all(_TAG.match(f[0]) for f in tabbed) and not all(_TAG.match(f[1].strip()) for f in tabbed):
            return "bio-tagfirst"
        weibo = [_split_weibo(None, line) for line in lines]
        return "weibo" if all(w and len(w[0]) <= 2 for w in weibo) else "bio"
    chars = [_split_char(None, line) for line in lines]
    if all(c and _TAG.match(c[1]) for c in chars):
        return "bmes" if any(c[1][0] in "MES" for c in chars) else "char-bio"
    columns = [line.split("\t") if "\t" in line else line.split() for line in lines]
    if all(len(f) >= 2 for f in columns) and all(_TAG.match(f[-1]) for f in columns):
        return "bio" if all(len(f) == 2 for f in columns) else "conll"
    if all(len(f) == 2 for f in columns) and all(_TAG.match(f[0]) for f in columns):
        return "bio-tagfirst"
    return None
