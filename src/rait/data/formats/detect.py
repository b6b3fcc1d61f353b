"""Guessing a file's format from its name and first items, and a text's language from its characters."""

from __future__ import annotations

import re
from collections import Counter
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


_KEY_RULES = (  # keys of a JSON record -> its format, first match wins
    (("id", "text", "mentions"), "rait"),
    (("entity_list",), "entity-list-jsonl"),
    (("sentence", "label"), "boson"),
    (("tagName", "input"), "pile-qa"),
    (("conversations",), "uniner"),
    (("messages",), "uniner"),
    (("sentence", "entities"), "gliner"),
    (("text", "entities"), "skyner"),
    (("tokens", "ner_tags"), "tokens-tags"),
    (("tokens", "tags"), "tokens-tags"),
)


def _format_from_keys(keys: set[str]) -> str | None:
    return next((fmt for needed, fmt in _KEY_RULES if set(needed) <= keys), None)


def _unknown_shape(path: Path, value) -> DataError:
    """The error for valid JSON that is no NER format rait reads."""
    if isinstance(value, dict) and _format_from_keys(set(value)):
        message = "cannot tell the format: valid JSON, but one record over several lines; give a JSON array"
        return DataError(path, f"{message}, or one record per line (JSON lines)")
    if isinstance(value, dict):
        what = f"an object with keys {', '.join(sorted(value)[:8]) or '(none)'}"
    else:
        what = f"a JSON {type(value).__name__}"
    shapes = "; ".join(f"{'+'.join(keys)} ({fmt})" for keys, fmt in _KEY_RULES)
    return DataError(
        path,
        f"cannot tell the format: valid JSON, but its first record is {what}, not an NER format rait reads; "
        f"give a JSON array or JSON lines of objects with the keys {shapes}",
    )


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
        return _detect_json(path)
    if text.lstrip()[:1] in ("[", "{"):  # JSON, or a tagged file whose first token starts with a bracket
        try:
            return _detect_json(path)
        except DataError:
            if (fmt := _detect_tagged(text, path)) is None:
                raise
            return fmt
    return _detect_tagged(text, path)


def _detect_json(path: Path) -> str:
    first = next(_json_items(path), None)
    if first is None:
        raise DataError(path, "file is empty: no records")
    try:
        obj = _json_value(first.raw)
    except _Bad as bad:
        try:  # one JSON value over several lines (pretty-printed): valid, but not a record per line
            obj = _json_value(_read_text(path))
        except _Bad:
            raise DataError(path, bad.message, line=first.line) from None
        raise _unknown_shape(path, obj) from None
    fmt = _format_from_keys(set(obj)) if isinstance(obj, dict) else None
    if fmt is None:
        raise _unknown_shape(path, obj)
    return fmt


def _detect_tagged(text: str, path: Path) -> str | None:
    """The tagged format of the first 100 lines; None when they do not look tagged; DataError naming the
    line when most look tagged (a token and a tag) but one does not, or one has other columns."""
    numbered = [(n, line) for n, line in enumerate(_lines(text[:100_000])[:500], start=1)]
    numbered = [(n, line) for n, line in numbered if line.strip() and not _is_docstart(line)][:100]
    lines = [line for _, line in numbered]
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
    if all(len(f) == 2 for f in columns) and all(_TAG.match(f[0]) for f in columns):
        return "bio-tagfirst"
    tagged = [len(f) >= 2 and _TAG.match(f[-1]) is not None for f in columns]
    if all(tagged):
        width = Counter(len(f) for f in columns).most_common(1)[0][0]
        for (number, line), fields in zip(numbered, columns, strict=True):
            if len(fields) != width:
                message = f"{len(fields)} columns where the other lines have {width}: {line[:80]!r}"
                raise DataError(path, message, line=number)
        return "bio" if width == 2 else "conll"
    if sum(tagged) * 5 >= len(tagged) * 4:  # mostly "token tag" lines: a bad line, not plain text
        number, line = next(item for item, ok in zip(numbered, tagged, strict=True) if not ok)
        message = f"looks like a tagged file (a token and a tag per line) but this line is not: {line[:80]!r}"
        raise DataError(path, message, line=number)
    return None
