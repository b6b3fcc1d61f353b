"""The rich console every command prints with."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape as _escape_markup

LOG_WIDTH = 160  # columns when output goes to a file or pipe; rich's own fallback of 80 cuts tables short


def make_console(stderr: bool = False, **kwargs) -> Console:
    """A console on stdout (or stderr) that is as wide as the terminal, or ``LOG_WIDTH`` columns when the
    output is redirected (``nohup ... > log``) and ``COLUMNS`` is not set."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else LOG_WIDTH
    return Console(stderr=stderr, width=width, **kwargs)


def escape(text: object) -> str:
    """``text`` (any object, as ``str``) with rich markup escaped, so that data text such as ``[/b]`` or
    ``[red]`` prints as it is. Every message or table cell that shows text from data files goes through it."""
    return _escape_markup(str(text))
