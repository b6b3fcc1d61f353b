"""Loaders and writers for the NER data formats found in the wild, all read into :class:`rait.records.Record`.

Every loader reads one file. A malformed item (line, sentence block or JSON array element) raises
:class:`rait.errors.DataError` naming the file, line and problem; with ``skip_bad=True`` it is skipped and
listed in :class:`LoadStats` instead, never dropped silently. Text conventions: word-level tagged files
(``bio``, ``bio-tagfirst``) join tokens with single spaces (UniversalNER's convention), character-level ones
(``char-bio``, ``bmes``, ``weibo``) with nothing; mention spans are character offsets into that text
(end exclusive). Sources that give only mention strings (``uniner``, ``boson``, ``skyner``, ``pile-qa``)
yield mentions with ``start``/``end`` None.

Quirks of the real files, handled explicitly:
- an ``I-``/``M-``/``E-`` tag that does not continue an entity of the same type (Weibo, Pile-NER BIO) is read
  as the start of a new entity (the conlleval convention) and listed in ``LoadStats.repaired``;
- Weibo's first column is the character followed by its position in the word (``李0``, ``开1``); the
  position is stripped; a few characters are two U+FFFD replacement characters and are kept as they are;
- CMeEE's train file has empty inverted spans (``16    15    pro``: end = start - 1); such an empty mention
  is dropped and listed in ``LoadStats.repaired``; CRLF line ends are accepted.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.errors import DataError, RaitError
from rait.fileio import atomic_write, read_text, write_json, write_jsonl
from rait.records import Conversation, Mention, Record
from rait.templates import WORDINGS, build_conversation


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


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def detect_lang(text: str) -> str:
    """``"zh"`` when at least a fifth of the non-space characters are CJK ideographs, else ``"en"``."""
    chars = [c for c in text if not c.isspace()]
    return "zh" if chars and len(_CJK.findall(text)) * 5 >= len(chars) else "en"


# ------------------------------------------------------------------------------------- tagged sequences

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


# --------------------------------------------------------------------------------------- JSON formats


def _load_rait(reader: _Reader) -> list[Record]:
    def parse(item: _Item) -> Record:
        obj = _json_value(item.raw)
        text = _get(obj, "text", str)
        types = obj.get("types")
        if types is not None and not (isinstance(types, list) and all(isinstance(t, str) for t in types)):
            raise _Bad("expected a list of strings or null", field="types")
        mentions = []
        for k, m in enumerate(_get(obj, "mentions", list)):
            where = f"mentions[{k}]"
            if not isinstance(m, dict) or set(m) - {"text", "type", "start", "end"}:
                raise _Bad("expected an object with text, type, start, end", field=where)
            mention = _string_mention(m.get("text"), m.get("type"), where)
            start, end = m.get("start"), m.get("end")
            if start is not None or end is not None:
                try:
                    _check_span(text, mention.text, start, end)
                except _Bad as bad:
                    raise _Bad(bad.message, field=where) from None
            mentions.append(Mention(mention.text, mention.type, start, end))
        tokens = obj.get("tokens")
        if tokens is not None and not (
            isinstance(tokens, list) and all(isinstance(t, str) for t in tokens) and " ".join(tokens) == text
        ):
            raise _Bad("expected a list of strings that, joined by spaces, is the text", field="tokens")
        record_id = str(_get(obj, "id", (str, int)))
        return Record(record_id, text, mentions, types, str(obj.get("source", "")), tokens)

    return reader.parse_all(_json_items(reader.path), parse)


_QUESTIONS = {
    lang: re.compile(re.escape(w.question).replace("%s", "(.+)", 1) + r"\Z", re.S)
    for lang, w in WORDINGS.items()
}
# Passage-turn prefixes, longest first: each template's, and "文本：" without the space (rait's files
# before the space was added to match the reference).
_PASSAGE_PREFIXES = sorted(
    [(w.passage.replace("%s", ""), lang) for lang, w in WORDINGS.items()] + [("文本：", "zh")],
    key=lambda item: -len(item[0]),
)
_Parsed = tuple[str, str, list[tuple[str, list[str]]]]  # (conversation id, passage, [(type, gold mentions)])


def _parse_conversation(obj: Any) -> _Parsed:
    """(id, passage, [(type, gold mentions)]) of a UniNER/RA-IT conversation (an examples turn is ignored)."""
    try:
        conversation = Conversation.from_dict(obj)
    except (KeyError, TypeError, AttributeError) as exc:
        raise _Bad(f"not a conversation ({type(exc).__name__}: {exc})", field="conversations") from None
    turns = conversation.turns
    passages = [
        next(
            (
                (position, lang, turn.content[len(prefix) :])
                for prefix, lang in _PASSAGE_PREFIXES
                if turn.content.startswith(prefix)
            ),
            None,
        )
        for position, turn in enumerate(turns)
        if turn.role == "user"
    ]
    passages = [p for p in passages if p is not None]
    if not passages:
        raise _Bad("no user turn starts with a passage prefix ('Text: ' or '文本：')", field="conversations")
    position, lang, text = passages[0]
    queries: list[tuple[str, list[str]]] = []
    rest = turns[position + 2 :]
    if len(rest) % 2:
        raise _Bad("a question turn has no answer", field="conversations")
    for k in range(0, len(rest), 2):
        question, answer = rest[k], rest[k + 1]
        match = _QUESTIONS[lang].match(question.content)
        if question.role != "user" or answer.role != "assistant" or not match:
            raise _Bad(
                f"turn {position + 2 + k} is not a type question: {question.content[:80]!r}",
                field="conversations",
            )
        try:
            gold = json.loads(answer.content)
        except json.JSONDecodeError:
            gold = None
        if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
            message = (
                f"answer of turn {position + 3 + k} is not a JSON list of strings: {answer.content[:80]!r}"
            )
            raise _Bad(message, field="conversations")
        queries.append((match.group(1), gold))
    return conversation.id, text, queries


def _group_conversations(parsed: Iterable[_Parsed], source: str) -> list[Record]:
    """One record per passage: consecutive conversations about the same text asking new types are merged
    (UniNER eval files hold one (sentence, type) query per conversation)."""
    records: list[Record] = []
    for conv_id, text, queries in parsed:
        last = records[-1] if records else None
        if last is None or last.text != text or {t for t, _ in queries} & set(last.types or ()):
            last = Record(conv_id, text, [], [], source)
            records.append(last)
        for entity_type, gold in queries:
            last.types.append(entity_type)
            last.mentions.extend(Mention(g, entity_type) for g in gold)
    return records


def _load_uniner(reader: _Reader) -> list[Record]:
    def parse(item: _Item):
        conv_id, text, queries = _parse_conversation(_json_value(item.raw))
        return conv_id or reader.record_id(item.index), text, queries

    return _group_conversations(reader.parse_all(_json_items(reader.path), parse), reader.path.stem)


def _load_gliner(reader: _Reader) -> list[Record]:
    def parse(item: _Item) -> Record:
        obj = _json_value(item.raw)
        text = _get(obj, "sentence", str)
        mentions = []
        for k, entity in enumerate(_get(obj, "entities", list)):
            where = f"entities[{k}]"
            try:
                name, pos = _get(entity, "name", str), _get(entity, "pos", list)
                if len(pos) != 2:
                    raise _Bad(f"pos must be [start, end], got {pos!r}")
                _check_span(text, name, pos[0], pos[1], "pos")
                mentions.append(Mention(name, _get(entity, "type", str), pos[0], pos[1]))
            except _Bad as bad:
                raise _Bad(bad.message, field=f"{where}.{bad.field}" if bad.field else where) from None
        return Record(reader.record_id(item.index), text, mentions, source=reader.path.stem)

    return reader.parse_all(_json_items(reader.path), parse)


def _load_entity_list(reader: _Reader) -> list[Record]:
    def parse(item: _Item) -> Record:
        obj = _json_value(item.raw)
        text = _get(obj, "text", str)
        mentions = []
        for k, entity in enumerate(_get(obj, "entity_list", list)):
            where = f"entity_list[{k}]"
            try:
                mention, entity_type = _get(entity, "entity", str), _get(entity, "entity_type", str)
                index = _get(entity, "entity_index", dict)
                start, end = index.get("begin"), index.get("end")
                _check_span(text, mention, start, end, "entity_index")
            except _Bad as bad:
                raise _Bad(bad.message, field=f"{where}.{bad.field}" if bad.field else where) from None
            mentions.append(Mention(mention, entity_type, start, end))
        return Record(reader.record_id(item.index), text, mentions, source=reader.path.stem)

    return reader.parse_all(_json_items(reader.path), parse)


def _string_mention(mention: Any, entity_type: Any, where: str) -> Mention:
    if not (isinstance(mention, str) and mention and isinstance(entity_type, str) and entity_type):
        raise _Bad(
            f"mention and type must be non-empty strings, got {mention!r}, {entity_type!r}", field=where
        )
    return Mention(mention, entity_type)


def _load_boson(reader: _Reader) -> list[Record]:
    def parse(item: _Item) -> Record:
        obj = _json_value(item.raw)
        text = _get(obj, "sentence", str)
        mentions = [_string_mention(m, t, "label") for m, t in _get(obj, "label", dict).items()]
        record_id = str(obj["id"]) if "id" in obj else reader.record_id(item.index)
        return Record(record_id, text, mentions, source=reader.path.stem)

    return reader.parse_all(_json_items(reader.path), parse)


def _load_skyner(reader: _Reader) -> list[Record]:
    def parse(item: _Item) -> Record:
        obj = _json_value(item.raw)
        text = _get(obj, "text", str)
        entities = _get(obj, "entities", (str, list))
        if isinstance(entities, str):
            try:
                entities = ast.literal_eval(entities)
            except (ValueError, SyntaxError) as exc:
                raise _Bad(f"not a Python literal: {exc}", field="entities") from None
        if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
            raise _Bad("expected a list of {mention: type} dicts", field="entities")
        mentions = [_string_mention(m, t, "entities") for e in entities for m, t in e.items()]
        return Record(reader.record_id(item.index), text, mentions, source=reader.path.stem)

    return reader.parse_all(_json_items(reader.path), parse)


def _load_pile_qa(reader: _Reader) -> list[Record]:
    """Pile-NER question rows (``doc_question_pairID`` is ``doc:question``), one record per document."""

    def parse(item: _Item) -> tuple[str, str, str, list[str]]:
        obj = _json_value(item.raw)
        doc = _get(obj, "doc_question_pairID", str).rpartition(":")[0] or reader.record_id(item.index)
        gold = _json_value(_get(obj, "output", (str, list)))
        if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
            raise _Bad("expected a JSON list of strings", field="output")
        return doc, _get(obj, "input", str), _get(obj, "tagName", str), gold

    records: dict[str, Record] = {}

    def group(item: _Item) -> None:
        doc, text, entity_type, gold = parse(item)
        record = records.setdefault(doc, Record(doc, text, [], [], reader.path.stem))
        if record.text != text:
            raise _Bad(f"input differs from the earlier rows of document {doc!r}", field="input")
        record.types.append(entity_type)
        record.mentions.extend(Mention(g, entity_type) for g in gold)

    reader.parse_all(_json_items(reader.path), group)
    return list(records.values())


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


_LOADERS: dict[str, Callable[[_Reader], list[Record]]] = {
    "rait": _load_rait,
    "uniner": _load_uniner,
    "bio": _tagged_loader(_split_tab, "'word<TAB>TAG' or 'word TAG'", " "),
    "bio-tagfirst": _tagged_loader(_split_tab_tag_first, "'TAG<TAB>word'", " "),
    "conll": _tagged_loader(_split_columns, "CoNLL columns (token ... tag)", " "),
    "char-bio": _tagged_loader(_split_char, "'char TAG'", ""),
    "bmes": _tagged_loader(_split_char, "'char TAG'", ""),
    "weibo": _tagged_loader(_split_weibo, "'<char><position><TAB>TAG'", ""),
    "gliner": _load_gliner,
    "entity-list-jsonl": _load_entity_list,
    "boson": _load_boson,
    "cmeee": _load_cmeee,
    "skyner": _load_skyner,
    "pile-qa": _load_pile_qa,
    "tokens-tags": _load_tokens_tags,
    "brat": _load_brat,
}
LOAD_FORMATS: tuple[str, ...] = tuple(_LOADERS)


# ------------------------------------------------------------------------------------------- detection


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


# ------------------------------------------------------------------------------------------- public API


def parse_columns(spec: str) -> tuple[int, int]:
    """``"TOKEN,TAG"`` column numbers (1-based; negative: from the last) as 0-based ``columns``."""
    try:
        token, tag = (int(v) for v in spec.split(","))
    except ValueError:
        raise RaitError(f"--columns {spec!r}: expected two column numbers, e.g. 1,4") from None
    if 0 in (token, tag):
        raise RaitError(f"--columns {spec!r}: columns are numbered from 1 (negative: from the last)")
    return (token - 1 if token > 0 else token, tag - 1 if tag > 0 else tag)


def load_records(
    path: str | Path,
    fmt: str | None = None,
    *,
    skip_bad: bool = False,
    stats: LoadStats | None = None,
    columns: tuple[int, int] | None = None,
    tag_names: Sequence[str] | None = None,
) -> list[Record]:
    """Read a data file into records; ``fmt`` is detected when None (see :data:`LOAD_FORMATS`).

    Bad items raise DataError, or with ``skip_bad`` are skipped and listed in ``stats.skipped``.
    ``columns``: 0-based (token, tag) columns of a ``conll`` file (negative: from the end; default first
    and last); ``tag_names``: the label list that integer tags of a ``tokens-tags`` file index."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file does not exist")
    fmt = fmt or detect_format(path)
    if fmt != "brat" and path.is_dir():
        raise DataError(path, "is a directory, not a data file")
    if fmt not in _LOADERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(LOAD_FORMATS)}")
    stats = stats if stats is not None else LoadStats()
    records = _LOADERS[fmt](_Reader(path, skip_bad, stats, columns, tag_names))
    if not records and not stats.skipped:
        raise DataError(path, f"no records in this {fmt} file")
    stats.records += len(records)
    stats.mentions += sum(len(r.mentions) for r in records)
    return records


def load_pile_ner_hub(
    name: str = "Universal-NER/Pile-NER-type",
    split: str = "train",
    *,
    skip_bad: bool = False,
    stats: LoadStats | None = None,
    cache_dir: str | Path | None = None,
) -> list[Record]:
    """Pile-NER-type conversations through ``datasets.load_dataset``: a Hub id, or a local JSON/jsonl file
    of the same conversations (read with the ``json`` builder). One record per passage, as ``uniner``."""
    import datasets

    stats = stats if stats is not None else LoadStats()
    local = Path(name)
    cache = str(cache_dir) if cache_dir is not None else None
    try:
        if local.is_file():
            dataset = datasets.load_dataset("json", data_files=str(local), split=split, cache_dir=cache)
        else:
            dataset = datasets.load_dataset(name, split=split, cache_dir=cache)
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise DataError(
            name,
            f"could not load the dataset ({type(exc).__name__}: {exc}); without Hub "
            "access, download its JSON file and pass the local path",
        ) from None
    reader = _Reader(local, skip_bad, stats)

    def parse(item: _Item):
        conv_id, text, queries = _parse_conversation(item.raw)
        return conv_id or f"{split}-{item.index}", text, queries

    rows = (_Item(None, i, row) for i, row in enumerate(dataset))
    records = _group_conversations(reader.parse_all(rows, parse), local.stem)
    stats.records += len(records)
    stats.mentions += sum(len(r.mentions) for r in records)
    return records


# ------------------------------------------------------------------------------------------------ writers


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
