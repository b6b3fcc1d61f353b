"""A persistent, append-only cache of teacher requests and responses (jsonl, one fsynced row per answer).

Rows are ``{"key", "teacher", "request", "output", "tokens"}``; ``key`` is the SHA-256 of the canonical
JSON of the request (base URL, model, messages and sampling parameters for a chat teacher). Only
successful answers are stored, so a re-run repeats failed requests and nothing else."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from rait.errors import DataError
from rait.fileio import JsonlAppender, read_jsonl


def request_key(request: dict) -> str:
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Thread-safe response cache; ``path=None`` keeps it in memory only."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self._rows: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._appender = JsonlAppender(self.path) if self.path is not None else None
        if self.path is not None and self.path.exists():
            for line, row in read_jsonl(self.path):
                for field in ("key", "output"):
                    if not isinstance(row, dict) or field not in row:
                        raise DataError(self.path, "missing in cache row", line=line, field=field)
                self._rows[row["key"]] = row

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._rows.get(key)

    def put(self, key: str, teacher: str, request: dict, output, tokens: int) -> None:
        row = {"key": key, "teacher": teacher, "request": request, "output": output, "tokens": tokens}
        with self._lock:
            self._rows[key] = row
            if self._appender is not None:
                self._appender.append(row)

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
