"""Errors with enough context for a user to fix their input."""

from __future__ import annotations

from pathlib import Path


class RaitError(Exception):
    """Base class for errors rait reports to the user as a one-line message."""


def require(module: str, extra: str):
    """Import ``module``, or raise one line naming the pip command of the rait extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RaitError(f"this needs {module.split('.')[0]}: pip install 'rait[{extra}]'") from None


class DataError(RaitError):
    """Malformed input data; names the file, the line (1-based) and the field when known."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = self.path + (f", line {line}" if line is not None else "")
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")
