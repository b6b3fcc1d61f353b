"""Loaders for the JSON / jsonl layouts: rait's own records, UniNER/RA-IT conversations, GLiNER,
entity-list jsonl, Boson, SkyNER and Pile-NER question rows."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from rait.data.formats.reading import _Bad, _check_span, _get, _Item, _json_items, _json_value, _Reader
from rait.records import Conversation, Mention, Record
from rait.templates import WORDINGS


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
        except (json.JSONDecodeError, RecursionError):
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


def _each_entity(obj: dict, key: str, parse: Callable[[Any], Mention]) -> list[Mention]:
    """``parse`` of every item of the list ``obj[key]``; an error names the item (``key[k].field``)."""
    mentions = []
    for k, entity in enumerate(_get(obj, key, list)):
        try:
            mentions.append(parse(entity))
        except _Bad as bad:
            where = f"{key}[{k}]"
            raise _Bad(bad.message, field=f"{where}.{bad.field}" if bad.field else where) from None
    return mentions


def _load_gliner(reader: _Reader) -> list[Record]:
    def parse(item: _Item) -> Record:
        obj = _json_value(item.raw)
        text = _get(obj, "sentence", str)

        def mention(entity) -> Mention:
            name, pos = _get(entity, "name", str), _get(entity, "pos", list)
            if len(pos) != 2:
                raise _Bad(f"pos must be [start, end], got {pos!r}")
            _check_span(text, name, pos[0], pos[1], "pos")
            return Mention(name, _get(entity, "type", str), pos[0], pos[1])

        mentions = _each_entity(obj, "entities", mention)
        return Record(reader.record_id(item.index), text, mentions, source=reader.path.stem)

    return reader.parse_all(_json_items(reader.path), parse)


def _load_entity_list(reader: _Reader) -> list[Record]:
    def parse(item: _Item) -> Record:
        obj = _json_value(item.raw)
        text = _get(obj, "text", str)

        def mention(entity) -> Mention:
            name, entity_type = _get(entity, "entity", str), _get(entity, "entity_type", str)
            index = _get(entity, "entity_index", dict)
            start, end = index.get("begin"), index.get("end")
            _check_span(text, name, start, end, "entity_index")
            return Mention(name, entity_type, start, end)

        mentions = _each_entity(obj, "entity_list", mention)
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
