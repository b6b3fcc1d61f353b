"""Atomic writes and the crash-tolerant append log."""

from __future__ import annotations

import json

import pytest

from rait.errors import DataError
from rait.fileio import JsonlAppender, atomic_write, read_jsonl, write_jsonl


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as handle:
        handle.write("half")
        raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]


def test_appender_drops_a_torn_last_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    with JsonlAppender(path) as log:
        assert log.existing() == [{"a": 1}, {"a": 2}]
        log.append({"a": 3})
    assert [row for _, row in read_jsonl(path)] == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [{"ok": 1}])
    with path.open("a") as handle:
        handle.write("\n{not json}\n")
    with pytest.raises(DataError, match=r"bad.jsonl, line 3: invalid JSON"):
        list(read_jsonl(path))
    assert json.loads(path.read_text().splitlines()[0]) == {"ok": 1}
