"""Tagged-sequence loaders: one-token-per-line BIO / BMES / CoNLL / Weibo files (split into sentence
blocks, tags decoded into mention spans) and Hugging Face ``tokens``/``ner_tags`` rows."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from rait.data.formats.reading import _Bad, _get, _Item, _json_items, _json_value, _lines, _read_text, _Reader
from rait.errors import DataError
from rait.records import Mention, Record

_TAG = re.compile(r"^(?:O|[BIMES]-.+)$")
DOCSTART = "-DOCSTART-"


def _is_docstart(line: str) -> bool:
    """A CoNLL document separator line (``-DOCSTART- -X- -X- O``, ``-DOCSTART-<TAB>O``, ...)."""
    return DOCSTART in line.split()


def _blocks(text: str) -> Iterator[_Item]:
    """Sentence blocks of a tagged file: lists of (line number, line), separated by blank lines and by
    ``-DOCSTART-`` lines (document separators, never tokens)."""
    block: list[tuple[int, str]] = []
    index = 0
    for number, line in enumerate(_lines(text), start=1):
        if line.strip() and not _is_docstart(line):
            block.append((number, line))
        elif block:
            yield _Item(block[0][0], index, block)
            block, index = [], index + 1
    if block:
        yield _Item(block[0][0], index, block)


def _decode_tags(
    reader: _Reader, pairs: list[tuple[int, str, str]], joiner: str, marked_ends: bool = False
) -> tuple[str, list[Mention]]:
    """Text and mentions from (line, token, tag) triples in BIO or BMES/BIOES tagging. With
    ``marked_ends`` (the file uses E-/S- tags) an entity that is never closed by an E- tag is reported."""
    text_parts: list[str] = []
    starts: list[int] = []
    offset = 0
    for i, (_, token, _) in enumerate(pairs):
        if i:
            offset += len(joiner)
        starts.append(offset)
        text_parts.append(token)
        offset += len(token)
    text = joiner.join(text_parts)
    mentions: list[Mention] = []
    open_type: str | None = None
    open_start = 0
    open_line = 0

    def close(end_token: int, by_end_tag: bool) -> None:
        nonlocal open_type
        if open_type is not None:
            if marked_ends and not by_end_tag:
                reader.repaired(open_line, f"entity {open_type!r} opened here has no E- tag; read as ended")
            end = starts[end_token] + len(pairs[end_token][1])
            mentions.append(Mention(text[open_start:end], open_type, open_start, end))
            open_type = None

    for i, (line, token, tag) in enumerate(pairs):
        if tag != tag.strip():
            reader.repaired(line, f"tag {tag!r} has surrounding whitespace; read as {tag.strip()!r}")
            tag = tag.strip()
        if not _TAG.match(tag):
            hint = " (the columns look swapped: the word column holds a tag)" if _TAG.match(token) else ""
            raise _Bad(f"bad tag {tag!r} (expected O, B-, I-, M-, E- or S-<type>){hint}", line=line)
        if not token:
            raise _Bad("empty token", line=line)
        prefix, entity_type = tag[0], tag[2:]
        if prefix in "IME" and open_type != entity_type:
            reader.repaired(line, f"{tag!r} does not continue an entity of that type; read as its start")
            prefix = "B" if prefix != "E" else "S"
        if prefix in "BSO":
            close(i - 1, False)
        if prefix in "BS":
            open_type, open_start, open_line = entity_type, starts[i], line
        if prefix in "SE":
            close(i, True)
    close(len(pairs) - 1, False)
    return text, mentions


def _tagged_loader(split: Callable[[_Reader, str], tuple[str, str] | None], expected: str, joiner: str):
    """A loader for one-token-per-line files; ``split`` gives a line's (token, tag), None if malformed."""

    def load(reader: _Reader) -> list[Record]:
        text = _read_text(reader.path)

        def pairs_of(item: _Item) -> list[tuple[int, str, str]]:
            pairs = []
            for line, content in item.raw:
                fields = split(reader, content)
                if fields is None:
                    raise _Bad(f"expected {expected}, got {content[:80]!r}", line=line)
                pairs.append((line, *fields))
            return pairs

        blocks = reader.parse_all(_blocks(text), lambda item: (item, pairs_of(item)))
        marked_ends = any(tag.strip()[:2] in ("E-", "S-") for _, pairs in blocks for _, _, tag in pairs)

        def parse(entry: tuple[_Item, list[tuple[int, str, str]]]) -> Record:
            item, pairs = entry
            block_text, mentions = _decode_tags(reader, pairs, joiner, marked_ends)
            tokens = [token for _, token, _ in pairs]
            spaced = joiner == " " and any(any(c.isspace() for c in token) for token in tokens)
            return Record(
                reader.record_id(item.index),
                block_text,
                mentions,
                source=reader.path.stem,
                tokens=tokens if spaced else None,
            )

        entries = (_Item(item.line, item.index, (item, pairs)) for item, pairs in blocks)
        records = reader.parse_all(entries, lambda entry: parse(entry.raw))
        _check_not_truncated(reader.path, text, blocks)
        return records

    return load


def _check_not_truncated(path: Path, text: str, blocks: list) -> None:
    """A file cut inside its last tag (no final newline, e.g. ``London<TAB>B-LO``) invents a type: refuse
    a last line without a newline whose entity type appears nowhere else in the file."""
    if not blocks or text.endswith("\n"):
        return
    line, _, tag = blocks[-1][1][-1]
    last_type = tag.strip()[2:]
    if not last_type:
        return
    others = (t.strip()[2:] for _, pairs in blocks for n, _, t in pairs if n != line)
    if last_type not in set(others):
        raise DataError(
            path,
            f"the file ends without a newline inside tag {tag.strip()!r}, whose type appears nowhere else: "
            "it looks truncated (if the file is complete, end it with a newline)",
            line=line,
        )


def _split_tab(reader: _Reader, content: str) -> tuple[str, str] | None:
    """``word<TAB>TAG``, or ``word TAG`` on a line without tabs."""
    fields = content.split("\t") if "\t" in content else content.split()
    return (fields[0], fields[1]) if len(fields) == 2 else None


def _split_tab_tag_first(reader: _Reader, content: str) -> tuple[str, str] | None:
    fields = content.split("\t") if "\t" in content else content.split()
    return (fields[1], fields[0]) if len(fields) == 2 else None


def _split_columns(reader: _Reader, content: str) -> tuple[str, str] | None:
    """CoNLL columns (tab-separated, or whitespace-separated on a line without tabs): the token and tag
    columns of ``reader.columns``, by default the first and the last."""
    fields = content.split("\t") if "\t" in content else content.split()
    token, tag = reader.columns or (0, -1)
    if len(fields) < 2 or not -len(fields) <= min(token, tag) <= max(token, tag) < len(fields):
        return None
    return fields[token], fields[tag]


def _split_char(reader: _Reader | None, content: str) -> tuple[str, str] | None:
    """``char TAG`` or ``char<TAB>TAG``: one character, a separator, the tag (which may contain spaces)."""
    if len(content) < 3 or content[1] not in " \t":
        return None
    return content[0], content[2:]


_WEIBO_TOKEN = re.compile(r"([^0-9]*)([0-9]+)")


def _split_weibo(reader: _Reader | None, content: str) -> tuple[str, str] | None:
    """Weibo's ``<char><position in word><TAB>TAG``, position stripped (a digit char is the first digit)."""
    fields = content.split("\t")
    if len(fields) != 2 or not (match := _WEIBO_TOKEN.fullmatch(fields[0])):
        return None
    chars, digits = match.groups()
    if not chars:
        if len(digits) < 2:
            return None
        chars = digits[0]
    return chars, fields[1]


def _load_tokens_tags(reader: _Reader) -> list[Record]:
    """Hugging Face token classification rows: ``tokens`` and ``ner_tags`` (or ``tags``), the tags as
    strings or as integers into ``reader.tag_names`` (the dataset's label list)."""

    def parse(item: _Item) -> Record:
        obj = _json_value(item.raw)
        tokens = _get(obj, "tokens", list)
        key = "ner_tags" if isinstance(obj, dict) and "ner_tags" in obj else "tags"
        tags = _get(obj, key, list)
        if not all(isinstance(t, str) for t in tokens):
            raise _Bad("expected a list of strings", field="tokens")
        if len(tags) != len(tokens):
            raise _Bad(f"{len(tags)} tags for {len(tokens)} tokens", field=key)
        names = []
        for k, tag in enumerate(tags):
            if isinstance(tag, int) and not isinstance(tag, bool):
                if reader.tag_names is None:
                    raise _Bad("integer tags need the dataset's label list (--tag-names)", field=key)
                if not 0 <= tag < len(reader.tag_names):
                    raise _Bad(f"tag {tag} is outside the label list ({len(reader.tag_names)})", field=key)
                tag = reader.tag_names[tag]
            elif not isinstance(tag, str):
                raise _Bad(f"expected string or integer tags, got {tag!r}", field=f"{key}[{k}]")
            names.append(tag)
        line = item.line or 0
        text, mentions = _decode_tags(reader, [(line, t, g) for t, g in zip(tokens, names, strict=True)], " ")
        spaced = any(any(c.isspace() for c in t) for t in tokens)
        record_id = str(obj["id"]) if "id" in obj else reader.record_id(item.index)
        return Record(record_id, text, mentions, source=reader.path.stem, tokens=tokens if spaced else None)

    return reader.parse_all(_json_items(reader.path), parse)
