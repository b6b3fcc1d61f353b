"""Exclusive locks on resumable outputs, so that two rait processes never write one output together.

A lock is an ``flock`` on a hidden file beside the output (``.<name>.lock``) or inside an output directory
(``.rait.lock``), holding the owner's pid: the kernel releases it when the process ends, even on
``kill -9``, so a stale lock never blocks a resume. Holding the lock, the owner removes the hidden ``.tmp``
files that an interrupted atomic write left behind, and it removes the lock file when it is done (a
process that locked a lock file already removed retries on the new one). Standard output and special
files (:func:`rait.fileio.is_stream`) are not locked."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rait.errors import RaitError
from rait.fileio import is_stream

_HELD: dict[Path, int] = {}  # lock files this process holds (a nested lock on the same output is a no-op)


def lock_path(output: str | Path, directory: bool = False) -> Path:
    """Where the lock of ``output`` (a file, or with ``directory`` a directory) lives."""
    output = Path(output)
    return output / ".rait.lock" if directory else output.with_name(f".{output.name}.lock")


def clean_tmp_files(output: str | Path, directory: bool = False) -> list[Path]:
    """Remove the ``.<name>.*.tmp`` leftovers of :func:`rait.fileio.atomic_write` for ``output`` (or every
    hidden ``.tmp`` file under a directory output); returns what was removed. Call it holding the lock."""
    output = Path(output)
    if directory:
        found = [p for p in output.rglob(".*.tmp") if p.is_file()] if output.is_dir() else []
    else:
        found = [p for p in output.parent.glob(f".{output.name}.*.tmp") if p.is_file()]
    for path in found:
        path.unlink(missing_ok=True)
    return found


@contextmanager
def output_lock(
    output: str | Path, *, directory: bool = False, what: str = "output"
) -> Iterator[Path | None]:
    """Hold the lock of ``output`` for the ``with`` block; RaitError naming the other process's pid when
    another process holds it. Leftover ``.tmp`` files of the output are removed once it is held."""
    if not directory and is_stream(output):
        yield None
        return
    path = lock_path(output, directory).absolute()
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield path
        finally:
            _HELD[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _lock(path, output, what)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[path] = 1
        clean_tmp_files(output, directory)
        try:
            yield path
        finally:
            del _HELD[path]
            path.unlink(missing_ok=True)  # still holding it: a waiting process retries on a new file
    finally:
        os.close(fd)


def _lock(path: Path, output: str | Path, what: str) -> int:
    """An open descriptor of the lock file ``path``, locked; RaitError when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RaitError(
                f"{what} {output} is in use by another rait process (pid {owner}); wait for it to finish, "
                "stop it, or use another output"
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its owner removed it after we opened it: lock the new one
