"""Atomic, resumable file I/O helpers used by every long job.

Outputs: a regular file is written to a temporary file beside it and renamed into place; ``-`` is standard
output, and ``/dev/stdout`` (or ``/dev/fd/N``), a character device (``/dev/null``) or a named pipe is
written through, never replaced; a symbolic link is followed, so its target is replaced and the link
stays."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rait.errors import DataError, RaitError

# mkstemp creates files readable by their owner only; written files get the usual umask-based mode instead.
_UMASK = os.umask(0)
os.umask(_UMASK)

STDOUT = "-"  # the output path that means standard output
_NAMED_DESCRIPTORS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_DESCRIPTOR_FOLDERS = ("/dev/fd/", "/proc/self/fd/")


def _descriptor(path: str | Path) -> int | None:
    """The open descriptor a path such as ``-``, ``/dev/stdout`` or ``/dev/fd/3`` names, else None."""
    path = str(path)
    if path == STDOUT:
        return 1
    if path in _NAMED_DESCRIPTORS:
        return _NAMED_DESCRIPTORS[path]
    folder = next((f for f in _DESCRIPTOR_FOLDERS if path.startswith(f)), None)
    return int(path[len(folder) :]) if folder and path[len(folder) :].isdigit() else None


def writes_stdout(path: str | Path) -> bool:
    """Whether output ``path`` is this process's standard output (``-``, ``/dev/stdout``, ...)."""
    return _descriptor(path) == 1


def is_stream(path: str | Path) -> bool:
    """Whether ``path`` is written through rather than replaced: ``-`` or a path naming an open descriptor
    (``/dev/stdout``, ``/dev/fd/N``: written to that descriptor, so a shell redirection keeps its file and
    its appending), or (following symbolic links) an existing character device, named pipe or socket."""
    if _descriptor(path) is not None:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


@contextmanager
def _naming(path: Path):
    """Re-raise an OSError of the block that names no path, or a temporary file, as one naming ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or ".tmp" in str(exc.filename):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """Write to a temporary file beside ``path`` and rename it into place only on success; ``-`` and
    special files are written through (see the module docs). An OSError (a full disk, a full device)
    names ``path``."""
    text_encoding = None if "b" in mode else encoding
    if writes_stdout(path):
        stream = sys.stdout.buffer if "b" in mode else sys.stdout
        with _naming(Path("<stdout>")):
            yield stream
            stream.flush()
        return
    if (fd := _descriptor(path)) is not None:  # os.dup: closing the handle leaves the descriptor open
        with _naming(Path(path)), os.fdopen(os.dup(fd), mode, encoding=text_encoding) as handle:
            yield handle
        return
    path = Path(path)
    if is_stream(path):
        with _naming(path), open(path, mode, encoding=text_encoding) as handle:
            yield handle
        return
    path = Path(os.path.realpath(path)) if path.is_symlink() else path
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with _naming(path):
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, mode, encoding=text_encoding) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_file(path: str | Path, *, resumable: bool = False) -> Path:
    """Refuse, before any work, an output file path that is a directory, read-only, or in a folder that
    cannot be written (RaitError). ``-`` and special files (see the module docs) are accepted, except as
    the output of a ``resumable`` job, which reads its output back."""
    if is_stream(path):
        if resumable:
            what = "an open descriptor" if _descriptor(path) is not None else _kind(os.stat(path).st_mode)
            what = "standard output" if writes_stdout(path) else what
            raise RaitError(f"output {path} is {what}; this job resumes from its output: give a regular file")
        return Path(path)
    path = Path(path)
    if path.is_dir():
        raise RaitError(f"output {path} is a directory; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise RaitError(f"output {path} is read-only")
    return _check_writable_parent(path)


def check_output_dir(path: str | Path) -> Path:
    """Refuse, before any work, an output directory path that is a file or cannot be written (RaitError)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RaitError(f"output directory {path} is a file")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise RaitError(f"output directory {path} is not writable")
    return _check_writable_parent(path)


def _check_writable_parent(path: Path) -> Path:
    folder = _nearest_existing(path.parent if not path.exists() else path.parent.resolve())
    if not folder.is_dir():
        raise RaitError(f"cannot create {path}: {folder} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RaitError(f"cannot write {path}: {folder} is not writable")
    return path


def write_json(path: str | Path, data, indent: int | None = 2) -> None:
    with atomic_write(path) as handle:
        json.dump(data, handle, ensure_ascii=False, indent=indent)
        handle.write("\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def check_input_file(path: str | Path) -> Path:
    """``path`` as a Path; DataError when it does not exist or is not a regular file."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(path, "file does not exist") from None
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise DataError(path, "is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise DataError(path, f"is {_kind(mode)}, not a regular file; save the input to a file first")
    return path


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content (a leading BOM dropped); DataError naming the line of a bad byte."""
    path = check_input_file(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            path, f"not UTF-8 text ({exc.reason}, byte {exc.start}, column {column})", line=line
        ) from None


NESTED_TOO_DEEPLY = "invalid JSON: nested too deeply"


def read_json(path: str | Path):
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except RecursionError:
        raise DataError(path, NESTED_TOO_DEEPLY) from None


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line raises DataError."""
    path = Path(path)
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON: {exc.msg}", line=number) from None
        except RecursionError:
            raise DataError(path, NESTED_TOO_DEEPLY, line=number) from None
        yield number, value


class JsonlAppender:
    """Append-only jsonl log for resumable jobs: each row is flushed and fsynced as it is written,
    and a torn last line left by a crash is dropped on the next open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._handle = self.path.open("a", encoding="utf-8")

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with atomic_write(self.path, "wb") as handle:
                handle.write(data[: data.rfind(b"\n") + 1])

    def existing(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [row for _, row in read_jsonl(self.path)]

    def append(self, row: dict) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
