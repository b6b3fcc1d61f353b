"""Machinery shared by the loaders: the load stats, the per-file reader that turns a bad item into a
:class:`rait.errors.DataError` naming the file and line (or skips it), and the text/JSON item helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.errors import DataError
from rait.fileio import NESTED_TOO_DEEPLY, read_text


@dataclass(slots=True)
class LoadStats:
    """What a load produced and what it had to skip or repair (one message per item)."""

    records: int = 0
    mentions: int = 0
    skipped: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)


class _Bad(Exception):
    """A problem with one item; the driver turns it into a DataError naming the file and line."""

    def __init__(self, message: str, field: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message, self.field, self.line = message, field, line


@dataclass(slots=True)
class _Item:
    """One unit a loader parses: its 1-based line (None inside a JSON array), index and raw content."""

    line: int | None
    index: int
    raw: Any


class _Reader:
    """Per-file state shared by the loaders: the path, the skip policy, the stats, and the layout options
    (``columns``: 0-based token and tag columns of a ``conll`` file; ``tag_names``: the tag of each integer
    of ``tokens-tags`` files)."""

    def __init__(
        self,
        path: Path,
        skip_bad: bool,
        stats: LoadStats,
        columns: tuple[int, int] | None = None,
        tag_names: Sequence[str] | None = None,
    ):
        self.path, self.skip_bad, self.stats = path, skip_bad, stats
        self.columns, self.tag_names = columns, tag_names

    def parse_all(self, items: Iterable[_Item], parse: Callable[[_Item], Any]) -> list:
        out = []
        for item in items:
            try:
                out.append(parse(item))
            except _Bad as bad:
                where = bad.field
                if item.line is None:  # an element of a JSON array: name it by index
                    where = f"[{item.index}]" + (f".{bad.field}" if bad.field else "")
                error = DataError(self.path, bad.message, line=bad.line or item.line, field=where)
                if not self.skip_bad:
                    raise error from None
                self.stats.skipped.append(str(error))
        return out

    def repaired(self, line: int | None, message: str) -> None:
        self.stats.repaired.append(f"{self.path}" + (f", line {line}" if line else "") + f": {message}")

    def record_id(self, index: int) -> str:
        return f"{self.path.stem}-{index}"


# ---------------------------------------------------------------------------------------------- helpers


def _get(obj: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict):
        raise _Bad(f"expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise _Bad("missing", field=key)
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(k.__name__ for k in kinds)
        raise _Bad(f"expected {expected}, got {type(value).__name__}", field=key)
    return value


def _json_value(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _Bad(f"invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise _Bad(NESTED_TOO_DEEPLY) from None


def _read_text(path: Path) -> str:
    """The file's text (see :func:`rait.fileio.read_text`); DataError when it holds nothing but blanks."""
    text = read_text(path)
    if not text.strip():
        raise DataError(path, "file is empty")
    return text


def _lines(text: str) -> list[str]:
    """Lines split at ``\\n`` only (``str.splitlines`` also splits at U+2028 etc. inside JSON strings)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _line_items(text: str) -> Iterator[_Item]:
    """The non-blank lines of a file, numbered from 1, indexed from 0."""
    lines = ((number, line) for number, line in enumerate(_lines(text), start=1) if line.strip())
    return (_Item(number, index, line) for index, (number, line) in enumerate(lines))


def _json_items(path: Path) -> Iterator[_Item]:
    """Items of a JSON array file, or the lines of a jsonl file (parsed lazily by the loader)."""
    text = _read_text(path)
    if not text.lstrip().startswith("["):
        return _line_items(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except RecursionError:
        raise DataError(path, NESTED_TOO_DEEPLY) from None
    if not isinstance(data, list):
        raise DataError(path, "expected a JSON array")
    return (_Item(None, i, obj) for i, obj in enumerate(data))


def _check_span(text: str, mention: str, start: Any, end: Any, label: str = "span") -> None:
    if type(start) is not int or type(end) is not int:
        raise _Bad(f"{label} must be two integers, got {start!r}, {end!r}")
    if not 0 <= start < end <= len(text):
        raise _Bad(f"{label} [{start}, {end}) is outside the text (length {len(text)})")
    if text[start:end] != mention:
        raise _Bad(f"{label} [{start}, {end}) is {text[start:end]!r} in the text, not {mention!r}")
