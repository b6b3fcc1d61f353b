"""A labelled file of your own as a benchmark, queried and scored exactly like the registered ones.

Every passage is asked about every type of the file (so passages without mentions, and types absent from
a passage, give the empty-gold queries that keep precision honest), with the codes renamed by a label map
(:mod:`rait.data.labels`) in the questions and the gold alike. The benchmark's name is ``name``, else the file
stem, or the parent folder when the stem is a split name (``conll2003/test.txt`` -> ``conll2003``);
generated record ids carry that name. A file of unlabelled passages (one per line, no known format; or jsonl
or parquet rows with a ``text`` field and an optional ``id``) needs ``types``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rait.data.formats import LOAD_FORMATS, detect_lang, guess_format, load_records
from rait.data.labels import LabelMap, detect_label_map, parse_label_map
from rait.errors import DataError, RaitError
from rait.fileio import read_jsonl, read_text
from rait.records import Record

SPLIT_NAMES = frozenset({"train", "dev", "test", "valid", "validation", "val", "eval", "testa", "testb"})
TEXT_FORMAT = "text"  # one unlabelled passage per non-blank line
PASSAGES_FORMAT = "passages"  # unlabelled jsonl or parquet rows: a "text" field and an optional "id"
PASSAGE_FORMATS = (TEXT_FORMAT, PASSAGES_FORMAT)


def benchmark_name(path: str | Path) -> str:
    """The file stem (up to its first dot), or the parent folder's name when the stem is a split name."""
    path = Path(path)
    stem = path.name.split(".")[0] or path.stem
    if stem.lower() in SPLIT_NAMES and path.resolve().parent.name:
        return path.resolve().parent.name
    return stem


def dedupe_types(types: Sequence[str] | str | None) -> list[str] | None:
    """Types without repeats or blanks, in order; a single string is one type."""
    if types is None:
        return None
    if isinstance(types, str):
        types = [types]
    if not all(isinstance(t, str) for t in types):
        raise RaitError(f"types must be strings, got {list(types)!r}")
    return list(dict.fromkeys(t.strip() for t in types if t.strip()))


@dataclass(frozen=True, slots=True)
class FileBenchmark:
    """What :func:`load_file_benchmark` made of a file: the benchmark name, the format read, the label map
    applied (None: codes kept), the types every passage is asked about (None: each record's own)."""

    name: str
    format: str
    label_map: str | None
    types: tuple[str, ...] | None
    labelled: bool


def _passages(path: Path) -> list[Record]:
    lines = read_text(path).split("\n")
    return [Record(f"line-{n}", line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def _passage_rows(path: Path) -> bool:
    """Whether ``path`` is a ``.jsonl`` file whose first row is an unlabelled passage: ``text`` (a string)
    and at most an ``id`` besides."""
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with path.open("rb") as handle:  # the first row only: corpora can be large
        line = next((line for line in handle if line.strip()), b"")
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(row, dict) and isinstance(row.get("text"), str) and set(row) <= {"id", "text"}


def _row_passages(path: Path) -> list[Record]:
    """The passages of jsonl rows or a parquet table: ``text`` (a string) and ``id`` (else its row number)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(path, f"cannot read it as parquet ({str(exc).splitlines()[0]})") from None
        if "text" not in table.column_names:
            raise DataError(path, "no column 'text' (the passages)", field="text")
        ids = table.column("id").to_pylist() if "id" in table.column_names else None
        rows = [
            (n, {"text": t} | ({"id": ids[n - 1]} if ids else {}))
            for n, t in enumerate(table.column("text").to_pylist(), 1)
        ]
    else:
        rows = list(read_jsonl(path))
    records = []
    for n, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise DataError(path, "expected an object with a string 'text'", line=n, field="text")
        records.append(Record(str(row["id"]) if row.get("id") is not None else f"row-{n}", row["text"]))
    return records


def load_file_benchmark(
    path: str | Path,
    fmt: str | None = None,
    *,
    name: str | None = None,
    label_map: str | LabelMap | None = None,
    types: Sequence[str] | str | None = None,
    lang: str | None = None,
    columns: tuple[int, int] | None = None,
    tag_names: Sequence[str] | None = None,
) -> tuple[list[Record], FileBenchmark]:
    """The records of a data file set up as a benchmark (see the module docstring) and what was done.

    ``fmt``: any of :data:`rait.data.formats.LOAD_FORMATS`, ``"text"`` (passages, one per line),
    ``"passages"`` (jsonl or parquet rows with ``text``), or None to detect (a ``.parquet`` file, or a
    ``.jsonl`` file in no known format, is read as passage rows; any other file in no known format as lines).
    ``types`` replaces the questions (an error when none of them is a gold type); ``label_map``: a
    :class:`LabelMap` or what :func:`parse_label_map` reads, None to pick a built-in one whose codes equal the
    file's."""
    path = Path(path)
    if fmt is not None and fmt not in (*LOAD_FORMATS, *PASSAGE_FORMATS):
        raise RaitError(
            f"unknown input format {fmt!r}; choose one of {', '.join((*LOAD_FORMATS, *PASSAGE_FORMATS))}"
        )
    types = dedupe_types(types)
    if fmt is None and path.suffix == ".parquet":
        fmt = PASSAGES_FORMAT
    elif fmt is None and _passage_rows(path):
        fmt = PASSAGES_FORMAT
    elif fmt is None and not path.is_dir():
        fmt = guess_format(path) or TEXT_FORMAT
    if fmt == TEXT_FORMAT:
        records = _passages(path)
    elif fmt == PASSAGES_FORMAT:
        records = _row_passages(path)
    else:
        records = load_records(path, fmt, columns=columns, tag_names=tag_names)
    if not records:
        raise DataError(path, "no passages in this file")
    labelled = fmt not in PASSAGE_FORMATS
    chosen: LabelMap | None = None
    if isinstance(label_map, LabelMap):
        chosen = label_map
    elif label_map is not None:
        chosen = parse_label_map(label_map)
    elif labelled:
        codes = {m.type for r in records for m in r.mentions} | {t for r in records for t in r.types or ()}
        chosen = detect_label_map(codes, lang or detect_lang("".join(r.text for r in records[:200])))
    if chosen is not None:
        chosen.apply(records, path)
    gold_types = list(
        dict.fromkeys(t for r in records for t in (*(r.types or ()), *(m.type for m in r.mentions)))
    )
    if chosen is not None:
        gold_types = [t for t in chosen.types if t in gold_types] + [
            t for t in gold_types if t not in chosen.types
        ]
    if types is not None:
        if labelled and gold_types and not set(types) & set(gold_types):
            raise RaitError(
                f"--types {', '.join(types)}: none is a type of {path} (its types: {', '.join(gold_types)}); "
                "ask about those, or rename them with --label-map"
            )
        for record in records:
            record.types = list(types)
    elif labelled:
        for record in records:  # a benchmark: every passage is asked about every type of the file
            record.types = dedupe_types(record.types) if record.types is not None else list(gold_types)
    for record in records:
        if not record.query_types():
            raise DataError(path, f"record {record.id!r} has no entity types to ask about (pass --types)")
    bench_name = name or benchmark_name(path)
    generated = f"{path.stem}-"  # the loaders' ids: <file stem>-<index>
    for record in records:
        record.source = bench_name
        if record.id.startswith(generated) and record.id[len(generated) :].isdecimal():
            record.id = f"{bench_name}-{record.id[len(generated) :]}"
    info = FileBenchmark(
        bench_name,
        fmt,
        chosen.name if chosen else None,
        tuple(types) if types is not None else None,
        labelled,
    )
    return records, info


@dataclass(frozen=True, slots=True)
class FileSource:
    """A file benchmark as an experiment config lists it: the file, how to read it, and its sample size
    (None: the experiment's ``max_examples``)."""

    path: Path
    name: str
    format: str | None = None
    label_map: str | None = None
    max_examples: int | None = None
    columns: tuple[int, int] | None = None
    tag_names: tuple[str, ...] | None = None

    def options(self) -> dict:
        """The reading options that are set (what, besides the file, decides its queries)."""
        keys = ("format", "label_map", "max_examples", "columns", "tag_names")
        return {
            k: list(v) if isinstance(v, tuple) else v for k in keys if (v := getattr(self, k)) is not None
        }

    def load(self, max_examples: int, seed: int, lang: str | None = None) -> list[Record]:
        """The benchmark's records, a seeded sample of at most ``max_examples`` (this source's own size
        when set) kept in file order, as :func:`rait.data.benchmarks.load_benchmark` samples."""
        from rait.data.benchmarks import sample_passages

        records, _ = load_file_benchmark(
            self.path,
            self.format,
            name=self.name,
            label_map=self.label_map,
            lang=lang,
            columns=self.columns,
            tag_names=self.tag_names,
        )
        return sample_passages(records, self.max_examples or max_examples, seed)
