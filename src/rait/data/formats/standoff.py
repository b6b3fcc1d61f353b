"""Loaders for text annotated with character offsets outside JSON: brat standoff (``.txt`` + ``.ann``)
and CMeEE's ``text|||start end type|||`` lines."""

from __future__ import annotations

from pathlib import Path

from rait.data.formats.reading import _Bad, _check_span, _Item, _line_items, _read_text, _Reader
from rait.errors import DataError
from rait.fileio import read_text
from rait.records import Mention, Record


def _brat_pairs(path: Path) -> list[tuple[Path, Path]]:
    """(text, annotations) file pairs of a brat standoff path: one ``.ann``/``.txt`` or a directory."""
    if path.is_dir():
        anns = sorted(path.glob("*.ann"))
        if not anns:
            raise DataError(path, "is a directory with no brat .ann files")
    else:
        anns = [path.with_suffix(".ann")]
    pairs = []
    for ann in anns:
        text = ann.with_suffix(".txt")
        for needed in (ann, text):
            if not needed.is_file():
                raise DataError(needed, "file does not exist (brat needs the .txt and its .ann)")
        pairs.append((text, ann))
    return pairs


def _load_brat(reader: _Reader) -> list[Record]:
    """brat standoff: a document's ``.txt`` and its ``.ann`` ``T`` lines (``T1<TAB>type start end<TAB>text``).
    Other annotation lines (relations, events, notes) are ignored; a discontinuous mention (``0 5;9 12``)
    is dropped and listed in ``LoadStats.repaired``. One record per document, id = the file stem."""
    records = []
    for text_path, ann_path in _brat_pairs(reader.path):
        text = read_text(text_path)
        ann_reader = _Reader(ann_path, reader.skip_bad, reader.stats)

        def parse(item: _Item, text: str = text, ann_reader: _Reader = ann_reader) -> Mention | None:
            fields = item.raw.split("\t")
            if not fields[0].startswith("T"):
                return None
            if len(fields) < 3 or len(fields[1].split(" ")) < 3:
                raise _Bad(f"expected 'T<n><TAB>type start end<TAB>text', got {item.raw[:80]!r}")
            entity_type, spans = fields[1].split(" ", 1)
            if ";" in spans:
                ann_reader.repaired(item.line, f"discontinuous mention {fields[2]!r} dropped")
                return None
            start, end = spans.split(" ") if spans.count(" ") == 1 else (None, None)
            if not (start or "").isdecimal() or not (end or "").isdecimal():
                raise _Bad(f"expected 'start end' offsets, got {spans!r}")
            _check_span(text, fields[2], int(start), int(end))
            return Mention(fields[2], entity_type, int(start), int(end))

        lines = _line_items(read_text(ann_path))
        mentions = [m for m in ann_reader.parse_all(lines, parse) if m is not None]
        mentions.sort(key=lambda m: (m.start, m.end))
        records.append(Record(text_path.stem, text, mentions, source=reader.path.stem))
    return records


def _load_cmeee(reader: _Reader) -> list[Record]:
    """``text|||start end type|||...|||`` with inclusive end offsets."""

    def parse(item: _Item) -> Record:
        text, *fields = item.raw.split("|||")
        if not fields or fields[-1].strip():
            raise _Bad("expected 'text|||start end type|||...|||'")
        mentions = []
        for spec in fields[:-1]:
            parts = spec.split()
            if len(parts) != 3 or not (parts[0].isdecimal() and parts[1].isdecimal()):
                raise _Bad(f"expected 'start end type', got {spec.strip()!r}")
            start, last, entity_type = int(parts[0]), int(parts[1]), parts[2]
            if last == start - 1:
                reader.repaired(item.line, f"empty span {spec.strip()!r} dropped")
                continue
            if not start <= last < len(text):
                raise _Bad(f"span {spec.strip()!r} is outside the text (length {len(text)})")
            mentions.append(Mention(text[start : last + 1], entity_type, start, last + 1))
        return Record(reader.record_id(item.index), text, mentions, source=reader.path.stem)

    return reader.parse_all(_line_items(_read_text(reader.path)), parse)
