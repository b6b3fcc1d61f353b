"""Raw corpus -> passages of at most ``max_tokens`` tokens -> a seeded sample.

Inputs are ``.txt`` files (one document per file, per blank-line paragraph or per line) and ``.jsonl``
files (one document per line, text in a named field); directories are searched recursively for both."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rait.errors import DataError, RaitError
from rait.fileio import read_jsonl, read_text
from rait.records import DEFAULT_SEED

TEXT_UNITS = ("file", "paragraph", "line")
CORPUS_SUFFIXES = (".txt", ".jsonl")
_SENTENCE_END = frozenset(".!?;…。！？；")
_CJK_SENTENCE_END = frozenset("。！？；…")
_CLOSERS = "\"')]}”’」』）】》"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One passage of the corpus; ``id`` is ``<file>:<document>:<chunk>`` (1-based numbers)."""

    id: str
    text: str


@dataclass(slots=True)
class CorpusStats:
    """What was read: files, documents, chunks, and directory entries that were not corpus files."""

    files: int = 0
    documents: int = 0
    chunks: int = 0
    ignored_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "documents": self.documents,
            "chunks": self.chunks,
            "ignored_files": self.ignored_files,
        }


class TokenCounter:
    """Token offsets from a fast tokenizer: a ``tokenizers.Tokenizer`` or a transformers fast tokenizer."""

    def __init__(self, tokenizer):
        from tokenizers import Tokenizer

        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        if not isinstance(backend, Tokenizer):
            raise RaitError(f"chunking needs a fast tokenizer (with offsets); got {type(tokenizer).__name__}")
        self._backend = backend

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text`` (no special tokens)."""
        return list(self._backend.encode(text, add_special_tokens=False).offsets)

    def count(self, text: str) -> int:
        return len(self._backend.encode(text, add_special_tokens=False).ids)


def load_tokenizer(name_or_path: str | None):
    """A ``tokenizer.json`` file, or the tokenizer of a model (HF name/path; ``None``: the project's default
    model) via :func:`rait.models.load_tokenizer`."""
    if name_or_path is not None and Path(name_or_path).is_file():
        from tokenizers import Tokenizer

        try:
            return Tokenizer.from_file(str(name_or_path))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise DataError(name_or_path, f"not a tokenizer.json file: {exc}") from None
    from rait.models import load_tokenizer as load_model_tokenizer

    return load_model_tokenizer(name_or_path)


def _cut_ranks(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """For each token index b, how good a chunk boundary "before token b" is.

    3: paragraph break or sentence end, 2: whitespace (a single line break included), 1: between
    characters, 0: inside a character (byte-level tokens of one character share its offsets)."""
    before = [0] * (len(text) + 1)  # whitespace characters right before position c
    for c, char in enumerate(text):
        before[c + 1] = before[c] + 1 if char.isspace() else 0
    after = [0] * (len(text) + 1)  # whitespace characters from position c on
    for c in range(len(text) - 1, -1, -1):
        after[c] = after[c + 1] + 1 if text[c].isspace() else 0
    ranks = [0] * len(offsets)
    for b in range(1, len(offsets)):
        cut = offsets[b][0]
        if cut < offsets[b - 1][1]:
            continue
        start, end = cut - before[cut], cut + after[cut]
        k = start
        while k > 0 and text[k - 1] in _CLOSERS:
            k -= 1
        last = text[k - 1] if k > 0 else ""
        if text.count("\n", start, end) >= 2 or last in _CJK_SENTENCE_END:
            ranks[b] = 3
        elif end > start:
            ranks[b] = 3 if last in _SENTENCE_END else 2
        else:
            ranks[b] = 1
    return ranks


def chunk_text(text: str, tokenizer, max_tokens: int = 256) -> list[str]:
    """Split ``text`` into stripped passages of at most ``max_tokens`` tokens each.

    Cuts prefer sentence ends and line breaks (when they leave the passage at least half full), then word
    boundaries, then character boundaries. Each passage is re-tokenized on its own to enforce the limit."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    counter = tokenizer if isinstance(tokenizer, TokenCounter) else TokenCounter(tokenizer)
    offsets = counter.offsets(text)
    ranks = _cut_ranks(text, offsets)
    n = len(offsets)
    chunks: list[str] = []
    i = 0
    while i < n:
        j = n if n - i <= max_tokens else _best_cut(ranks, i, max_tokens)
        while True:
            piece = text[offsets[i][0] : offsets[j - 1][1]].strip()
            if j - i <= 1 or counter.count(piece) <= max_tokens:
                break
            j = next((b for b in range(j - 1, i, -1) if ranks[b] > 0), j - 1)
        if piece:
            chunks.append(piece)
        i = j
    return chunks


def _best_cut(ranks: list[int], start: int, max_tokens: int) -> int:
    window = range(start + max_tokens, start, -1)
    sentence = next((b for b in window if ranks[b] == 3), None)
    if sentence is not None and sentence - start >= max_tokens // 2:
        return sentence
    for rank in (2, 1):
        cut = next((b for b in window if ranks[b] >= rank), None)
        if cut is not None:
            return cut
    return start + max_tokens


def corpus_files(inputs: Sequence[str | Path], stats: CorpusStats | None = None) -> list[tuple[Path, str]]:
    """``(path, label)`` of every corpus file; a directory contributes its ``.txt``/``.jsonl`` files
    (recursively, sorted), labelled by their path relative to it. Other directory entries are recorded in
    ``stats.ignored_files``; a named file of another kind is an error."""
    found: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for sub in sorted(p for p in path.rglob("*") if p.is_file()):
                label = sub.relative_to(path).as_posix()
                if sub.suffix in CORPUS_SUFFIXES:
                    found.append((sub, label))
                elif stats is not None:
                    stats.ignored_files.append(str(sub))
        elif not path.exists():
            raise DataError(path, "file does not exist")
        elif path.suffix not in CORPUS_SUFFIXES:
            raise DataError(path, f"not a corpus file: expected one of {', '.join(CORPUS_SUFFIXES)}")
        else:
            found.append((path, path.name))
    return found


def iter_documents(
    path: Path, text_unit: str = "file", text_field: str = "text"
) -> Iterator[tuple[int, str]]:
    """``(document number, text)`` of one corpus file; jsonl documents are numbered by line."""
    if path.suffix == ".jsonl":
        for line, row in read_jsonl(path):
            value = row.get(text_field) if isinstance(row, dict) else None
            if not isinstance(value, str):
                raise DataError(path, "missing or not a string", line=line, field=text_field)
            yield line, value
        return
    if text_unit not in TEXT_UNITS:
        raise ValueError(f"unknown text unit {text_unit!r}; choose one of {TEXT_UNITS}")
    text = read_text(path)
    if text_unit == "file":
        units = [text]
    elif text_unit == "paragraph":
        units = re.split(r"\n[ \t]*\n", text)
    else:
        units = text.splitlines()
    yield from ((number, unit) for number, unit in enumerate(units, start=1) if unit.strip())


def iter_chunks(
    files: Sequence[tuple[Path, str]],
    tokenizer,
    max_tokens: int = 256,
    text_unit: str = "file",
    text_field: str = "text",
    stats: CorpusStats | None = None,
    progress: Callable[[], None] | None = None,
) -> Iterator[Chunk]:
    """Every passage of ``files`` (from :func:`corpus_files`) in order; ``progress()`` after each file."""
    stats = stats if stats is not None else CorpusStats()
    counter = TokenCounter(tokenizer)
    for path, label in files:
        stats.files += 1
        for number, text in iter_documents(path, text_unit, text_field):
            stats.documents += 1
            for k, piece in enumerate(chunk_text(text, counter, max_tokens), start=1):
                stats.chunks += 1
                yield Chunk(f"{label}:{number}:{k}", piece)
        if progress is not None:
            progress()


def sample_chunks(chunks: Iterator[Chunk], size: int | None, seed: int = DEFAULT_SEED) -> list[Chunk]:
    """A seeded uniform sample of ``size`` chunks (all when ``None``), in corpus order.

    Reservoir sampling: memory stays proportional to ``size`` whatever the corpus size."""
    if size is None:
        return list(chunks)
    if size < 0:
        raise ValueError("sample size must be non-negative")
    rng = random.Random(seed)
    reservoir: list[tuple[int, Chunk]] = []
    for index, chunk in enumerate(chunks):
        if len(reservoir) < size:
            reservoir.append((index, chunk))
        else:
            slot = rng.randrange(index + 1)
            if slot < size:
                reservoir[slot] = (index, chunk)
    return [chunk for _, chunk in sorted(reservoir, key=lambda pair: pair[0])]
