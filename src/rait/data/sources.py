"""Training sources: load one (a data file, a registered name or a Hub dataset), detect its language,
take a seeded subsample. Shared by data building (:mod:`rait.build_data`) and out-domain example pools
(:mod:`rait.retrieval.pool`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rait.data.benchmarks import get_spec, load_benchmark
from rait.data.formats import detect_lang as detect_text_lang
from rait.data.formats import load_pile_ner_hub, load_records
from rait.errors import DataError, RaitError
from rait.records import Record

HUB_PREFIX = "hub:"


def load_source(source: str, fmt: str | None = None) -> tuple[list[Record], str | None]:
    """Records of a training source and its language when known (a registry entry's, else None)."""
    if source.startswith(HUB_PREFIX):
        return load_pile_ner_hub(source[len(HUB_PREFIX) :] or "Universal-NER/Pile-NER-type"), None
    path = Path(source)
    if path.exists():
        if path.is_dir():
            raise DataError(path, "is a directory; give the data file")
        return load_records(path, fmt), None
    try:
        spec = get_spec(source)
    except RaitError as exc:
        raise RaitError(f"source {source!r} is not a file, nor a registered name ({exc})") from None
    return load_benchmark(spec.name, split="train", max_examples=None), spec.lang


def detect_lang(records: list[Record], sample: int = 200) -> str:
    """``"zh"`` when the first ``sample`` passages are mostly Chinese
    (:func:`rait.data.formats.detect_lang`)."""
    return detect_text_lang("".join(r.text for r in records[:sample]))


def subsample(records: list[Record], size: int | None, seed: int) -> list[Record]:
    """``size`` records chosen by a seeded hash of their ids, kept in source order. Smaller samples are
    subsets of larger ones (same seed), as a data-size study wants; ``None`` keeps all."""
    if size is None or size >= len(records):
        if size is not None and size > len(records):
            raise RaitError(f"size {size} is larger than the source ({len(records)} records)")
        return list(records)
    rank = sorted(
        range(len(records)), key=lambda i: hashlib.sha256(f"{seed}:{records[i].id}".encode()).digest()
    )
    return [records[i] for i in sorted(rank[:size])]
