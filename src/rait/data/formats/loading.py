"""The public loading entry points: :func:`load_records` (one data file, any of :data:`LOAD_FORMATS`),
:func:`load_pile_ner_hub` (Pile-NER-type through ``datasets``) and the ``--columns`` option parser."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rait.data.formats.detect import detect_format
from rait.data.formats.json_formats import _group_conversations, _parse_conversation
from rait.data.formats.reading import LoadStats, _Item, _Reader
from rait.data.formats.registry import _LOADERS, LOAD_FORMATS
from rait.errors import DataError, RaitError
from rait.records import Record


def parse_columns(spec: str) -> tuple[int, int]:
    """``"TOKEN,TAG"`` column numbers (1-based; negative: from the last) as 0-based ``columns``."""
    try:
        token, tag = (int(v) for v in spec.split(","))
    except ValueError:
        raise RaitError(f"--columns {spec!r}: expected two column numbers, e.g. 1,4") from None
    if 0 in (token, tag):
        raise RaitError(f"--columns {spec!r}: columns are numbered from 1 (negative: from the last)")
    return (token - 1 if token > 0 else token, tag - 1 if tag > 0 else tag)


def load_records(
    path: str | Path,
    fmt: str | None = None,
    *,
    skip_bad: bool = False,
    stats: LoadStats | None = None,
    columns: tuple[int, int] | None = None,
    tag_names: Sequence[str] | None = None,
) -> list[Record]:
    """Read a data file into records; ``fmt`` is detected when None (see :data:`LOAD_FORMATS`).

    Bad items raise DataError, or with ``skip_bad`` are skipped and listed in ``stats.skipped``.
    ``columns``: 0-based (token, tag) columns of a ``conll`` file (negative: from the end; default first
    and last); ``tag_names``: the label list that integer tags of a ``tokens-tags`` file index."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file does not exist")
    fmt = fmt or detect_format(path)
    if fmt != "brat" and path.is_dir():
        raise DataError(path, "is a directory, not a data file")
    if fmt not in _LOADERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(LOAD_FORMATS)}")
    stats = stats if stats is not None else LoadStats()
    records = _LOADERS[fmt](_Reader(path, skip_bad, stats, columns, tag_names))
    if not records and not stats.skipped:
        raise DataError(path, f"no records in this {fmt} file")
    stats.records += len(records)
    stats.mentions += sum(len(r.mentions) for r in records)
    return records


def load_pile_ner_hub(
    name: str = "Universal-NER/Pile-NER-type",
    split: str = "train",
    *,
    skip_bad: bool = False,
    stats: LoadStats | None = None,
    cache_dir: str | Path | None = None,
) -> list[Record]:
    """Pile-NER-type conversations through ``datasets.load_dataset``: a Hub id, or a local JSON/jsonl file
    of the same conversations (read with the ``json`` builder). One record per passage, as ``uniner``."""
    import datasets

    stats = stats if stats is not None else LoadStats()
    local = Path(name)
    cache = str(cache_dir) if cache_dir is not None else None
    try:
        if local.is_file():
            dataset = datasets.load_dataset("json", data_files=str(local), split=split, cache_dir=cache)
        else:
            dataset = datasets.load_dataset(name, split=split, cache_dir=cache)
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise DataError(
            name,
            f"could not load the dataset ({type(exc).__name__}: {exc}); without Hub "
            "access, download its JSON file and pass the local path",
        ) from None
    reader = _Reader(local, skip_bad, stats)

    def parse(item: _Item):
        conv_id, text, queries = _parse_conversation(item.raw)
        return conv_id or f"{split}-{item.index}", text, queries

    rows = (_Item(None, i, row) for i, row in enumerate(dataset))
    records = _group_conversations(reader.parse_all(rows, parse), local.stem)
    stats.records += len(records)
    stats.mentions += sum(len(r.mentions) for r in records)
    return records
