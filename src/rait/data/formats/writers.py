"""Writers for the output formats (:data:`WRITE_FORMATS`) and :func:`convert` (load, then write)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from rait.data.formats.detect import detect_lang
from rait.data.formats.loading import load_records
from rait.data.formats.reading import LoadStats
from rait.errors import DataError
from rait.fileio import atomic_write, write_json, write_jsonl
from rait.records import Conversation, Mention, Record
from rait.templates import build_conversation


def _require_spans(path: Path, record: Record) -> list[Mention]:
    for m in record.mentions:
        if m.start is None or m.end is None:
            raise DataError(
                path, f"record {record.id!r}: mention {m.text!r} has no span, which this format needs"
            )
    return sorted(record.mentions, key=lambda m: (m.start, m.end))


def _bio_lines(path: Path, record: Record) -> list[str]:
    tokens = record.tokens if record.tokens is not None else record.text.split(" ")
    if " ".join(tokens) != record.text:
        raise DataError(path, f"record {record.id!r}: its tokens joined by spaces are not its text")
    if any(not t or "\t" in t or "\n" in t for t in tokens) or (
        record.tokens is None and any(c.isspace() for t in tokens for c in t)
    ):
        raise DataError(path, f"record {record.id!r}: BIO needs tokens separated by single spaces")
    starts, ends, offset = {}, {}, 0
    for i, token in enumerate(tokens):
        starts[offset], ends[offset + len(token)] = i, i + 1
        offset += len(token) + 1
    tags = ["O"] * len(tokens)
    for m in _require_spans(path, record):
        first, after = starts.get(m.start), ends.get(m.end)
        if first is None or after is None or any(t != "O" for t in tags[first:after]):
            raise DataError(
                path,
                f"record {record.id!r}: mention {m.text!r} is not on token boundaries or overlaps another",
            )
        tags[first:after] = [f"B-{m.type}"] + [f"I-{m.type}"] * (after - first - 1)
    return [f"{token}\t{tag}" for token, tag in zip(tokens, tags, strict=True)]


def _write_rait(records: list[Record], path: Path, lang: str | None) -> None:
    write_jsonl(path, (r.to_dict() for r in records))


def _conversations(records: list[Record], lang: str | None) -> list[Conversation]:
    return [build_conversation(r, lang=lang or detect_lang(r.text)) for r in records]


def _write_uniner(records: list[Record], path: Path, lang: str | None) -> None:
    write_json(path, [c.to_sharegpt() for c in _conversations(records, lang)])


def _write_messages(records: list[Record], path: Path, lang: str | None) -> None:
    write_jsonl(path, (c.to_messages() for c in _conversations(records, lang)))


def _write_entity_list(records: list[Record], path: Path, lang: str | None) -> None:
    def row(record: Record) -> dict:
        entities = [
            {"entity_index": {"begin": m.start, "end": m.end}, "entity_type": m.type, "entity": m.text}
            for m in _require_spans(path, record)
        ]
        return {"text": record.text, "entity_list": entities}

    write_jsonl(path, [row(r) for r in records])


def _write_bio(records: list[Record], path: Path, lang: str | None) -> None:
    blocks = ["\n".join(_bio_lines(path, r)) + "\n" for r in records]
    with atomic_write(path) as handle:
        handle.write("\n".join(blocks))


_WRITERS: dict[str, Callable[[list[Record], Path, str | None], None]] = {
    "rait": _write_rait,
    "uniner": _write_uniner,
    "messages": _write_messages,
    "entity-list-jsonl": _write_entity_list,
    "bio": _write_bio,
}
WRITE_FORMATS: tuple[str, ...] = tuple(_WRITERS)


def write_records(
    records: Iterable[Record], path: str | Path, fmt: str = "rait", *, lang: str | None = None
) -> None:
    """Write records atomically in one of :data:`WRITE_FORMATS`; DataError if a record does not fit.

    ``uniner`` (a JSON array) and ``messages`` (jsonl) are vanilla conversations from
    :func:`rait.templates.build_conversation`, in ``lang`` (detected per record when None);
    ``entity-list-jsonl`` needs spans; ``bio`` needs spans on the space-separated tokens, not overlapping."""
    if fmt not in _WRITERS:
        raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(WRITE_FORMATS)}")
    _WRITERS[fmt](list(records), Path(path), lang)


def convert(
    source: str | Path,
    target: str | Path,
    from_fmt: str | None = None,
    to_fmt: str = "rait",
    *,
    skip_bad: bool = False,
    lang: str | None = None,
    columns: tuple[int, int] | None = None,
    tag_names: Sequence[str] | None = None,
) -> LoadStats:
    """Read ``source`` (format detected when None; ``columns``/``tag_names`` as in :func:`load_records`)
    and write it to ``target`` as ``to_fmt``."""
    if to_fmt not in _WRITERS:
        raise ValueError(f"unknown output format {to_fmt!r}; choose one of {', '.join(WRITE_FORMATS)}")
    stats = LoadStats()
    records = load_records(
        source, from_fmt, skip_bad=skip_bad, stats=stats, columns=columns, tag_names=tag_names
    )
    write_records(records, target, to_fmt, lang=lang)
    return stats
