"""The rich console every command prints with, and the progress bar of long jobs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape as _escape_markup
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

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


def progress_bar(enabled: bool = True, console: Console | None = None) -> Progress:
    """The progress bar of every long job: description, bar, done/total, elapsed and remaining time.
    Disabled (draws nothing) when ``enabled`` is false."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, disable=not enabled)


@contextmanager
def progress(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """One task on a :func:`progress_bar`; yields ``advance(n)``. A no-op when ``enabled`` is false."""
    if not enabled:
        yield lambda n: None
        return
    with progress_bar() as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
