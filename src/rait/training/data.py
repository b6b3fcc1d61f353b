"""Training data: reading and validating conversation files, the validation hold-out, and encoding with the
length rule."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rait.chat import IGNORE_INDEX, encode_for_training
from rait.errors import DataError, RaitError
from rait.fileio import read_json, read_jsonl
from rait.records import Conversation

_ROLES = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}


def _conversation(obj, path: Path, line: int | None, prefix: str) -> Conversation:
    def error(message: str, key: str | None = None):
        return DataError(
            path, message, line=line, field=f"{prefix}{key}" if key else (prefix.rstrip(".") or None)
        )

    if not isinstance(obj, dict):
        raise error("expected a conversation object")
    if "conversations" in obj:
        key, role_key, text_key = "conversations", "from", "value"
    elif "messages" in obj:
        key, role_key, text_key = "messages", "role", "content"
    else:
        raise error(
            "missing 'conversations' (from/value turns) or 'messages' (role/content turns)", "conversations"
        )
    turns = obj[key]
    if not isinstance(turns, list) or not turns:
        raise error("expected a non-empty list of turns", key)
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise error("expected a turn object", where)
        role = turn.get(role_key)
        if role not in _ROLES:
            raise error(
                f"unknown or missing role {role!r}; expected one of {', '.join(_ROLES)}",
                f"{where}.{role_key}",
            )
        if not isinstance(turn.get(text_key), str):
            raise error("missing or not a string", f"{where}.{text_key}")
    conversation = Conversation.from_dict(obj)
    if not any(t.role == "assistant" for t in conversation.turns):
        raise error("no assistant turn to learn from", key)
    return conversation


def load_conversations(paths: Sequence[str | Path]) -> list[Conversation]:
    """Read and validate conversation files; any malformed conversation raises :class:`DataError`."""
    conversations: list[Conversation] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(path, "file does not exist")
        found: list[Conversation] = []
        if path.suffix == ".json":
            data = read_json(path)
            if isinstance(data, dict) and ("conversations" in data or "messages" in data):
                data = [data]
            if not isinstance(data, list):
                raise DataError(path, "expected a JSON list of conversations (or JSONL, one per line)")
            found = [_conversation(obj, path, None, f"[{i}].") for i, obj in enumerate(data)]
        else:
            found = [_conversation(obj, path, line, "") for line, obj in read_jsonl(path)]
        if not found:
            raise DataError(path, "no conversations in file")
        conversations += found
    return conversations


def split_validation(
    conversations: Sequence[Conversation], fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """(training, validation) conversations: a seeded random ``fraction`` (at least one) held out, both in
    input order; ``fraction`` 0 holds out nothing."""
    if fraction <= 0:
        return list(conversations), []
    n_val = max(1, round(fraction * len(conversations)))
    if n_val >= len(conversations):
        raise RaitError(
            f"validation_fraction {fraction} of {len(conversations)} conversations leaves none to train on"
        )
    held = set(random.Random(seed).sample(range(len(conversations)), n_val))
    train_part = [c for i, c in enumerate(conversations) if i not in held]
    return train_part, [c for i, c in enumerate(conversations) if i in held]


@dataclass
class EncodedData:
    """Tokenized training examples and what the length rule did."""

    examples: list[dict[str, list[int]]]
    n_conversations: int
    n_truncated: int = 0
    n_dropped_long: int = 0
    n_dropped_unlabelled: int = 0

    def stats(self) -> dict:
        return {
            "conversations": self.n_conversations,
            "examples": len(self.examples),
            "truncated": self.n_truncated,
            "dropped_too_long": self.n_dropped_long,
            "dropped_no_labels": self.n_dropped_unlabelled,
            "tokens": sum(len(e["input_ids"]) for e in self.examples),
            "label_tokens": sum(sum(x != IGNORE_INDEX for x in e["labels"]) for e in self.examples),
        }


def encode_conversations(
    tokenizer,
    conversations: Sequence[Conversation],
    max_length: int,
    length_rule: str = "truncate",
    system_prompt: str = "none",
) -> EncodedData:
    """Encode for training (after the ``system_prompt`` turn) and apply the length rule; a conversation with
    no assistant token left within ``max_length`` is dropped (it has nothing to learn). Every truncation and
    drop is counted."""
    data = EncodedData([], len(conversations))
    for conversation in conversations:
        encoded = encode_for_training(tokenizer, conversation.turns, system_prompt=system_prompt)
        if len(encoded["input_ids"]) > max_length:
            if length_rule == "drop":
                data.n_dropped_long += 1
                continue
            encoded = {k: v[:max_length] for k, v in encoded.items()}
            data.n_truncated += 1
        if all(x == IGNORE_INDEX for x in encoded["labels"]):
            data.n_dropped_unlabelled += 1
            continue
        data.examples.append(encoded)
    return data
