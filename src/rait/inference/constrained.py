"""Copy-constrained decoding: every answer a well-formed JSON list of distinct substrings of the passage.

In ``constrained`` mode the answer to a type question can only be ``[``, zero or more JSON strings
separated by ``, ``, ``]`` and then an end-of-turn token. Each string is a non-empty, exact (case-kept)
substring of the passage, JSON-escaped as ``json.dumps(..., ensure_ascii=False)`` writes it (the training
answers' form), and differs from the strings already in the answer. A token is also allowed only if the
answer can still be closed within the tokens left, so an answer is closed (``"]``) before the cap instead
of being cut. Within these rules the model's greedy choice wins: its top token is taken whenever it is
allowed, so an answer it would have written validly anyway is unchanged.

The check works on bytes, not words: each token is its byte string (byte-level BPE pieces, including
partial UTF-8 sequences of CJK characters), walked through the answer grammar; inside a string the state is
the set of offsets in the passage's escaped UTF-8 bytes where the string written so far can end (strings
start at character boundaries, close only at one; with ``words``, the ``constrained-words`` decoding, only
at word boundaries: never between two :func:`rait.inference.entities.is_word_char` characters). Per decoding
step a row costs one walk of its chosen token's bytes; only when that token is refused are the allowed tokens
enumerated, by walking a byte trie of the vocabulary along the bytes the grammar allows next (never the
whole vocabulary), cached per passage and grammar state.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rait.answers import parse_answer_items
from rait.inference.entities import is_word_char

# grammar states
START, OPEN, STRING, AFTER, COMMA, SPACE, CLOSED, DONE = range(8)
_QUOTE, _RBRACKET = ord('"'), ord("]")
_FIXED = {
    (START, ord("[")): OPEN,
    (OPEN, _QUOTE): STRING,
    (OPEN, _RBRACKET): CLOSED,
    (AFTER, ord(",")): COMMA,
    (AFTER, _RBRACKET): CLOSED,
    (COMMA, ord(" ")): SPACE,
    (SPACE, _QUOTE): STRING,
}
_FIXED_NEXT = {state: tuple(b for (s, b) in _FIXED if s == state) for state, _ in _FIXED}


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where one answer is in the grammar: ``state``; inside a string, ``ends`` (offsets in the escaped
    passage where the string so far can end; ``None`` right after the opening quote) and ``content`` (its
    escaped bytes); ``emitted``: the strings already closed in this answer."""

    state: int = START
    ends: tuple[int, ...] | None = None
    content: bytes = b""
    emitted: frozenset[bytes] = frozenset()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE token strings are written with it)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


_BYTE_OF_CHAR = {char: byte for byte, char in _bytes_to_unicode().items()}
_SP_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def token_byte_strings(tokenizer) -> list[bytes | None]:
    """The byte string of every token id (``None`` for special tokens and pieces that are not text).

    Byte-level BPE pieces (GPT-2, LLaMA-3, Qwen, SmolLM2) are mapped back through GPT-2's byte table;
    SentencePiece pieces get ``▁`` -> space and ``<0xNN>`` byte-fallback pieces their byte."""
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = set(tokenizer.all_special_ids)
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    normal = [p for i, p in enumerate(pieces) if i not in special and i not in added and p]
    byte_level = sum(all(c in _BYTE_OF_CHAR for c in p) for p in normal) >= 0.99 * max(len(normal), 1)
    out: list[bytes | None] = []
    for token_id, piece in enumerate(pieces):
        if token_id in special or not piece:
            out.append(None)
        elif token_id in added:
            out.append(None if added[token_id].special else added[token_id].content.encode())
        elif byte_level:
            out.append(
                bytes(_BYTE_OF_CHAR[c] for c in piece) if all(c in _BYTE_OF_CHAR for c in piece) else None
            )
        else:
            match = _SP_BYTE.fullmatch(piece)
            out.append(bytes([int(match.group(1), 16)]) if match else piece.replace("▁", " ").encode())
    return out


class TokenVocab:
    """A tokenizer's token byte strings in a byte trie, and its stop (end-of-turn) token ids; built once
    per tokenizer and shared by all passages."""

    def __init__(self, tokenizer, stop_ids: Sequence[int]):
        self.token_bytes = token_byte_strings(tokenizer)
        self.stop_ids = frozenset(stop_ids)
        self.stop_tensor = torch.tensor(sorted(self.stop_ids), dtype=torch.long)
        self.root: tuple[dict, list] = ({}, [])
        self.id_of: dict[bytes, int] = {}
        for token_id, data in enumerate(self.token_bytes):
            if not data or token_id in self.stop_ids:
                continue
            node = self.root
            for byte in data:
                node = node[0].setdefault(byte, ({}, []))
            node[1].append(token_id)
            self.id_of.setdefault(data, token_id)
        self.missing_bytes = frozenset(b for b in range(256) if bytes((b,)) not in self.id_of)

    def cost(self, data: bytes) -> int:
        """Tokens needed to write ``data``, at most: 1 when it is one token, else one per byte."""
        return 0 if not data else 1 if data in self.id_of else len(data)


class PassageConstraint:
    """The constraint for one passage: its escaped bytes, where strings can start and close (character
    boundaries, or with ``words`` word boundaries), and a cache of the allowed tokens per grammar state. One
    object serves every type question about the passage.

    Strings cannot contain a character with a byte the vocabulary cannot write as a token of its own (with
    byte-level BPE only bytes that never occur in UTF-8 text, or rare 4-byte lead bytes)."""

    def __init__(self, text: str, vocab: TokenVocab, words: bool = False):
        self.vocab = vocab
        chunks = [json.dumps(char, ensure_ascii=False)[1:-1].encode() for char in text]
        self.escaped = b"".join(chunks)
        self.bounds: set[int] = set()  # offsets where strings can start and close
        self.blocked: set[int] = set()  # offsets of characters strings cannot contain
        offset = 0
        for index, chunk in enumerate(chunks):
            if not (words and index and is_word_char(text[index - 1]) and is_word_char(text[index])):
                self.bounds.add(offset)
            if not vocab.missing_bytes.isdisjoint(chunk):
                self.blocked.update(range(offset, offset + len(chunk)))
            offset += len(chunk)
        self.bounds.add(offset)
        first: dict[int, list[int]] = {}
        for start in sorted(self.bounds):
            if start < len(self.escaped) and start not in self.blocked:
                first.setdefault(self.escaped[start], []).append(start + 1)
        self._first = {byte: tuple(ends) for byte, ends in first.items()}
        singles, starts = set(), sorted(self.bounds)
        for start, end in itertools.pairwise(starts):  # the shortest string from each start
            if self.blocked.isdisjoint(range(start, end)):
                singles.add((vocab.cost(self.escaped[start:end]), self.escaped[start:end]))
        self._pieces = sorted(singles, key=lambda item: (item[0], len(item[1]), item[1]))
        self._allowed: dict[tuple, torch.Tensor] = {}
        self._fresh: dict[frozenset, float] = {}

    # -- walking bytes through the grammar

    def _extend(self, ends: tuple[int, ...] | None, byte: int) -> tuple[int, ...]:
        if ends is None:
            return self._first.get(byte, ())
        data, blocked = self.escaped, self.blocked
        return tuple(x + 1 for x in ends if x < len(data) and data[x] == byte and x not in blocked)

    def _closable(self, ends: tuple[int, ...] | None) -> bool:
        return ends is not None and any(x in self.bounds for x in ends)

    def advance(self, cursor: Cursor, data: bytes) -> Cursor | None:
        """The cursor after writing ``data``, or ``None`` when the grammar refuses it."""
        return self._walk(cursor, data)[0]

    def _walk(self, cursor: Cursor, data: bytes) -> tuple[Cursor | None, bool]:
        """:meth:`advance`, and whether ``data`` was refused for closing a string already in the answer."""
        state, ends, content, emitted = cursor.state, cursor.ends, cursor.content, cursor.emitted
        for byte in data:
            if state == STRING:
                if byte == _QUOTE and self._closable(ends):
                    if content in emitted:
                        return None, True
                    state, ends, content, emitted = AFTER, None, b"", emitted | {content}
                    continue
                ends = self._extend(ends, byte)
                if not ends:
                    return None, False
                content += bytes((byte,))
            else:
                state = _FIXED.get((state, byte))
                if state is None:
                    return None, False
        return Cursor(state, ends, content, emitted), False

    def finish(self, data: bytes) -> bytes:
        """``data`` (an answer's bytes) when it is a complete answer, else cut after its last complete
        string and closed with ``]``."""
        cursor, kept = Cursor(), 0
        for end in range(1, len(data) + 1):
            cursor = self.advance(cursor, data[end - 1 : end])
            if cursor is None:
                break
            if cursor.state == CLOSED:
                return data[:end]
            if cursor.state in (OPEN, AFTER):
                kept = end
        return data[:kept] + b"]" if kept else b"[]"

    # -- how many tokens closing the answer takes, at most

    def _fresh_cost(self, emitted: frozenset[bytes]) -> float:
        """Tokens for the shortest new string: its first shortest strings (a character, or a word with
        ``words``) not yet in the answer."""
        cost = self._fresh.get(emitted)
        if cost is None:
            cost = next((c for c, piece in self._pieces if piece not in emitted), None)
            if cost is None:  # every shortest string is already an answer: try longer substrings
                starts = sorted(self.bounds)[:-1]
                cost = math.inf
                for start in starts:
                    cost = min(cost, self._continue_cost(start, b"", emitted, skip_empty=True))
            self._fresh[emitted] = cost
        return cost

    def _continue_cost(self, x: int, content: bytes, emitted: frozenset, skip_empty: bool = False) -> float:
        data, end = self.escaped, x
        while True:
            if end in self.bounds and not (skip_empty and end == x):
                piece = data[x:end]
                if content + piece not in emitted:
                    return self.vocab.cost(piece)
            if end >= len(data) or end in self.blocked:
                return math.inf
            end += 1

    def need(self, cursor: Cursor) -> float:
        """Tokens that close the answer from ``cursor``, at most (``inf``: it cannot be closed)."""
        state, cost = cursor.state, self.vocab.cost
        if state in (CLOSED, DONE):
            return 0
        if state == START:
            return cost(b"[]")
        if state in (OPEN, AFTER):
            return 1
        close = cost(b'"]')
        if state == STRING and cursor.ends is not None:
            best = min(self._continue_cost(x, cursor.content, cursor.emitted) for x in cursor.ends)
            return best + close
        fresh = self._fresh_cost(cursor.emitted) + close
        if state == STRING:
            return fresh
        return fresh + (cost(b' "') if state == COMMA else 1)

    # -- choosing a token

    def accept(self, cursor: Cursor, token: int, remaining: int) -> Cursor | None:
        """The cursor after ``token`` when the constraint allows it with ``remaining`` tokens left
        (counting this one), else ``None``."""
        if token in self.vocab.stop_ids:
            return Cursor(DONE) if cursor.state == CLOSED else None
        data = self.vocab.token_bytes[token] if token < len(self.vocab.token_bytes) else None
        if not data:
            return None
        after = self.advance(cursor, data)
        if after is None or self.need(after) > remaining - 1:
            return None
        return after

    def allowed(self, cursor: Cursor) -> torch.Tensor:
        """Token ids the grammar allows from ``cursor`` (ignoring repeats and the cap), ascending. Walks the
        vocabulary trie along the bytes the grammar allows next; cached per (state, ends)."""
        if cursor.state == CLOSED:
            return self.vocab.stop_tensor
        key = (cursor.state, cursor.ends)
        hit = self._allowed.get(key)
        if hit is None:
            ids: list[int] = []
            stack = [(self.vocab.root, cursor.state, cursor.ends)]
            while stack:
                node, state, ends = stack.pop()
                for byte in self._next_bytes(state, ends):
                    child = node[0].get(byte)
                    if child is None:
                        continue
                    step = self._step(state, ends, byte)
                    if step is not None:
                        ids.extend(child[1])
                        stack.append((child, *step))
            hit = self._allowed[key] = torch.tensor(sorted(ids), dtype=torch.long)
        return hit

    def _next_bytes(self, state: int, ends: tuple[int, ...] | None):
        if state != STRING:
            return _FIXED_NEXT.get(state, ())
        if ends is None:
            return self._first.keys()
        data = self.escaped
        following = {data[x] for x in ends if x < len(data) and x not in self.blocked}
        if self._closable(ends):
            following.add(_QUOTE)
        return following

    def _step(self, state: int, ends: tuple[int, ...] | None, byte: int):
        if state == STRING:
            if byte == _QUOTE and self._closable(ends):
                return AFTER, None
            ends = self._extend(ends, byte)
            return (STRING, ends) if ends else None
        state = _FIXED.get((state, byte))
        return None if state is None else (state, None)

    def decide(
        self, cursor: Cursor, greedy: int, logits: torch.Tensor, remaining: int
    ) -> tuple[int, Cursor, bool]:
        """The token to write after ``cursor`` when the model's top token is ``greedy``, the cursor after it,
        and whether the answer ends here because the model started to loop: ``greedy`` when allowed; a
        stop token when ``greedy`` would close a string already in the answer (the answer is then cut after
        its last complete string, :meth:`finish`); else the best allowed token (:meth:`choose`)."""
        after = self.accept(cursor, greedy, remaining)
        if after is not None:
            return greedy, after, False
        data = self.vocab.token_bytes[greedy] if greedy < len(self.vocab.token_bytes) else None
        if data and self._walk(cursor, data)[1]:
            return min(self.vocab.stop_ids), Cursor(DONE), True
        token, after = self.choose(cursor, logits, remaining)
        return token, after, False

    def choose(self, cursor: Cursor, logits: torch.Tensor, remaining: int) -> tuple[int, Cursor]:
        """The highest-scoring allowed token (lowest id among ties, as ``argmax``) and the cursor after it."""
        candidates = self.allowed(cursor)
        if len(candidates):
            order = torch.argsort(logits[candidates.to(logits.device)], descending=True, stable=True)
            for index in order.tolist():
                token = int(candidates[index])
                after = self.accept(cursor, token, remaining)
                if after is not None:
                    return token, after
        # unreachable with a byte-level vocabulary (every byte is a token); end the answer as it stands
        return min(self.vocab.stop_ids), Cursor(DONE)


class ConstrainedRows:
    """The constraint state of a batch of decoded rows (one passage constraint per row): each row's cursor,
    the bytes it wrote and the rows that ended by looping."""

    def __init__(self, constraints: Sequence[PassageConstraint]):
        self.constraints = list(constraints)
        self.cursors = [Cursor() for _ in self.constraints]
        self.written = [b"" for _ in self.constraints]  # each row's answer bytes so far
        self.looped: set[int] = set()

    def choose(self, row: int, greedy: int, scores: torch.Tensor, remaining: int) -> int:
        """The token row ``row`` writes when the model's top token is ``greedy`` (``scores``: the model's)
        with ``remaining`` tokens left, counting this one (:meth:`PassageConstraint.decide`), its state moved
        past it; an end token when the row ends, also when it started to loop (:meth:`rewrite` cuts it)."""
        constraint = self.constraints[row]
        token, after, looped = constraint.decide(self.cursors[row], greedy, scores, remaining)
        if looped:
            self.looped.add(row)
        elif after.state != DONE:
            self.written[row] += constraint.vocab.token_bytes[token]
        self.cursors[row] = after
        return token

    def forced(self, row: int, remaining: int) -> int | None:
        """The token the constraint leaves as row ``row``'s only choice outside a string (an end token after
        the closing ``]``), written as :meth:`choose` writes it; None when the model must choose."""
        cursor, constraint = self.cursors[row], self.constraints[row]
        if cursor.state == CLOSED:  # any end token: the row ends
            self.cursors[row] = Cursor(DONE)
            return min(constraint.vocab.stop_ids)
        if cursor.state in (STRING, DONE):
            return None
        allowed = constraint.allowed(cursor)
        if len(allowed) != 1:
            return None
        token = int(allowed[0])
        after = constraint.accept(cursor, token, remaining)
        if after is None:
            return None
        if after.state != DONE:
            self.written[row] += constraint.vocab.token_bytes[token]
        self.cursors[row] = after
        return token

    def admissible(self, row: int, tokens: Sequence[int], remaining: int) -> list[int]:
        """The longest start of ``tokens`` the constraint would let row ``row`` write (state unchanged)."""
        cursor, constraint = self.cursors[row], self.constraints[row]
        for index, token in enumerate(tokens):
            cursor = constraint.accept(cursor, token, remaining - index)
            if cursor is None:
                return list(tokens[:index])
            if cursor.state == DONE:
                return list(tokens[: index + 1])
        return list(tokens)

    def rewrite(self, outputs: list[list[int]], encode) -> None:
        """Replace the token ids of the rows that ended by looping with ``encode`` of their cut answer."""
        for row in self.looped:
            outputs[row] = encode(self.constraints[row].finish(self.written[row]).decode())


def is_copy_answer(answer: str, text: str) -> bool:
    """Whether ``answer`` is in the constrained grammar: a JSON list, written as ``json.dumps(...,
    ensure_ascii=False)`` writes it, of distinct non-empty substrings of ``text``."""
    items = parse_answer_items(answer)
    return (
        items is not None
        and json.dumps(items, ensure_ascii=False) == answer
        and len(set(items)) == len(items)
        and all(item and item in text for item in items)
    )


class RequestConstraint:
    """The constraint as a per-request logits processor ``(output_ids, logits) -> logits`` (vLLM's
    request-level interface): all scores but the chosen token's are set to ``-inf``, so greedy decoding
    takes the token :class:`ConstrainedRows` would take. ``max_tokens``: the request's token cap. An answer
    that ends by looping is left unclosed: :meth:`PassageConstraint.finish` its text."""

    def __init__(self, constraint: PassageConstraint, max_tokens: int):
        self.constraint = constraint
        self.max_tokens = max_tokens
        self.cursor = Cursor()
        self.seen = 0

    def __call__(self, output_ids: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        if len(output_ids) < self.seen:  # the request was restarted (e.g. preempted): replay from the start
            self.cursor, self.seen = Cursor(), 0
        while self.seen < len(output_ids):
            token, remaining = output_ids[self.seen], self.max_tokens - self.seen
            self.cursor = self.constraint.accept(self.cursor, token, remaining) or Cursor(DONE)
            self.seen += 1
        if self.cursor.state == DONE:
            return logits
        remaining = self.max_tokens - len(output_ids)
        token, _, _ = self.constraint.decide(self.cursor, int(logits.argmax()), logits, remaining)
        keep = logits[token].clone()
        logits.fill_(-math.inf)
        logits[token] = keep
        return logits
