"""Typed reading of a YAML mapping whose errors name the file, the line and the dotted key
(:class:`Reader`, used by :func:`rait.experiment.config.load_config`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from rait.errors import DataError


def key_lines(text: str) -> dict[str, int]:
    """1-based line of every key and list item, named like ``training.sizes`` or ``evaluation.modes[1]``."""
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{prefix}.{key.value}" if prefix else str(key.value)
                lines[name] = key.start_mark.line + 1
                walk(value, name)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                name = f"{prefix}[{index}]"
                lines[name] = item.start_mark.line + 1
                walk(item, name)

    try:
        walk(yaml.compose(text), "")
    except yaml.YAMLError:
        pass
    return lines


class Reader:
    """Type-checks YAML values, raising DataError with the file, the line and the dotted key."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = key_lines(text)

    def error(self, key: str, message: str) -> DataError:
        probe = key
        while probe and probe not in self.lines:
            probe = probe[: max(probe.rfind("."), probe.rfind("["), 0)]
        return DataError(self.path, message, line=self.lines.get(probe), field=key or None)

    def mapping(self, value, key: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.error(key, f"must be a mapping, got {kind_of(value)}")
        for name in value:
            if name not in allowed:
                raise self.error(join_key(key, name), f"unknown key; allowed keys: {', '.join(allowed)}")
        for name in required:
            if name not in value:
                raise self.error(key, f"missing required key '{name}'")
        return value

    def string(self, value, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {kind_of(value)}")
        return value

    def choice(self, value, key: str, choices: Sequence[str]) -> str:
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def integer(self, value, key: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {kind_of(value)}")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def boolean(self, value, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {kind_of(value)}")
        return value

    def items(self, value, key: str) -> list:
        """A non-empty list; a scalar is read as a list of one."""
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(key, "must not be empty")
        return items

    def integers(self, value, key: str, minimum: int = 0) -> tuple[int, ...]:
        items = self.items(value, key)
        out = tuple(
            self.integer(v, f"{key}[{i}]" if isinstance(value, list) else key, minimum)
            for i, v in enumerate(items)
        )
        return tuple(dict.fromkeys(out))

    def choices(self, value, key: str, choices: Sequence[str]) -> tuple[str, ...]:
        items = self.items(value, key)
        out = tuple(
            self.choice(v, f"{key}[{i}]" if isinstance(value, list) else key, choices)
            for i, v in enumerate(items)
        )
        return tuple(dict.fromkeys(out))

    def options(self, value, key: str, allowed: set[str]) -> dict:
        """Stage options, checked against the stage's accepted names."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"must be a mapping, got {kind_of(value)}")
        for name in value:
            if name not in allowed:
                accepted = ", ".join(sorted(allowed))
                raise self.error(join_key(key, name), f"unknown option; accepted: {accepted}")
        return dict(value)


def join_key(prefix: str, name) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def kind_of(value) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"
