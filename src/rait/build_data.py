"""Build vanilla or RA-IT instruction-tuning conversations from a training source.

Every passage becomes a UniversalNER-style conversation (its entity types and absent types sampled by
frequency over the whole source, shuffled together, by the RA-IT reference's rule; a source that already
is conversations keeps its own questions); with ``method="ra-it"`` it is preceded by up to ``k``
examples retrieved from the (sub-sampled) source itself. A sample left with no example (BM25 filter)
uses the vanilla template and is counted. Same inputs + seed give byte-identical data files."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import rait
from rait.console import progress
from rait.data.formats import LOAD_FORMATS
from rait.data.sources import detect_lang, load_source, subsample
from rait.errors import DataError, RaitError
from rait.fileio import atomic_write, check_output_file, sha256_file, write_json
from rait.locks import output_lock
from rait.negatives import DEFAULT_HARD_POOL, NEGATIVE_SAMPLINGS, NegativeRecipe
from rait.records import DEFAULT_SEED, Conversation, Record
from rait.retrieval import (
    DEFAULT_BM25_THRESHOLD,
    DEFAULT_K,
    DEFAULT_MIXED_RATIO,
    DEFAULT_NUM_EXAMPLES,
    INDEXES,
    Embedder,
    ExamplePool,
    check_options,
    get_embedder,
)
from rait.templates import NegativeTypeSampler, training_conversation

METHODS = ("vanilla", "ra-it")
_RETRIEVAL_OPTIONS = ("k", "strategy", "K", "bm25_threshold", "mixed_ratio", "embedder", "stopwords", "index")
FORMATS = ("sharegpt", "messages")


@dataclass
class BuildConfig:
    """Options of :func:`build_data` (``rait build-data``).

    ``source``: a data file (any format :func:`rait.data.formats.load_records` reads), a registered training
    source / benchmark name (its train split), or ``hub:<dataset id>`` (Pile-NER-type from the Hub).
    ``output``: the data file (``.jsonl``: one conversation per line; otherwise a JSON list); the
    manifest goes beside it as ``<stem>.manifest.json``. ``size``: a seeded subsample (the retrieval
    pool is the subsample). ``lang``: None detects it from the texts. ``embedder``: None picks the
    offline default for the language."""

    source: str
    output: str | Path
    method: str = "ra-it"
    k: int = DEFAULT_NUM_EXAMPLES
    strategy: str = "nn"
    K: int = DEFAULT_K
    bm25_threshold: float = DEFAULT_BM25_THRESHOLD
    mixed_ratio: float = DEFAULT_MIXED_RATIO
    size: int | None = None
    lang: str | None = None
    format: str = "sharegpt"
    negative_prob: float = 0.5
    negatives: int | None = None
    negative_ratio: float | None = None
    negative_sampling: str = "frequency"
    hard_pool: int = DEFAULT_HARD_POOL
    embedder: str | None = None
    seed: int = DEFAULT_SEED
    source_format: str | None = None
    stopwords: str | None = None
    index: str = "flat"
    cache_dir: str | None = None
    show_progress: bool = True

    def validate(self) -> None:
        if self.method not in METHODS:
            raise RaitError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.format not in FORMATS:
            raise RaitError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.index not in INDEXES:
            raise RaitError(f"unknown index {self.index!r}; choose one of {', '.join(INDEXES)}")
        if self.lang not in (None, "en", "zh"):
            raise RaitError(f"unknown language {self.lang!r}; choose en or zh")
        if self.source_format is not None and self.source_format not in LOAD_FORMATS:
            choices = ", ".join(LOAD_FORMATS)
            raise RaitError(f"unknown --source-format {self.source_format!r}; choose one of {choices}")
        if self.size is not None and self.size <= 0:
            raise RaitError(f"size must be positive, got {self.size}")
        if not 0.0 <= self.negative_prob <= 1.0:
            raise RaitError(f"negative_prob must be in [0, 1], got {self.negative_prob}")
        self._validate_negatives()
        check_options(self.k, self.strategy, self.K, self.mixed_ratio)

    def _validate_negatives(self) -> None:
        recipe = self.negatives is not None or self.negative_ratio is not None
        checks = [
            (
                self.negatives is None or self.negative_ratio is None,
                "give negatives or negative_ratio, not both",
            ),
            (self.negatives is None or self.negatives >= 0, f"negatives must be >= 0, got {self.negatives}"),
            (
                self.negative_ratio is None or self.negative_ratio >= 0,
                f"negative_ratio must be >= 0, got {self.negative_ratio}",
            ),
            (
                self.negative_sampling in NEGATIVE_SAMPLINGS,
                f"unknown negative_sampling {self.negative_sampling!r}; "
                f"choose one of {', '.join(NEGATIVE_SAMPLINGS)}",
            ),
            (
                recipe or self.negative_sampling == "frequency",
                f"negative_sampling {self.negative_sampling!r} needs negatives or negative_ratio "
                "(the paper's rule samples by frequency)",
            ),
            (
                not recipe or self.negative_prob == BuildConfig.negative_prob,
                "negative_prob is the paper's rule; leave it out with negatives or negative_ratio",
            ),
            (self.hard_pool > 0, f"hard_pool must be positive, got {self.hard_pool}"),
        ]
        for ok, message in checks:
            if not ok:
                raise RaitError(message)

    @property
    def negative_recipe(self) -> bool:
        """Whether negatives follow the product recipe, not the paper's rule."""
        return self.negatives is not None or self.negative_ratio is not None

    def manifest_options(self) -> dict:
        """The options that shaped the data (retrieval options are None for vanilla data)."""
        options = {f: v for f, v in asdict(self).items() if f not in ("show_progress", "source", "output")}
        if self.method == "vanilla":
            options |= dict.fromkeys(_RETRIEVAL_OPTIONS)
        return options


@dataclass
class BuildResult:
    """The conversations built, the number of examples each sample got (None for vanilla), the pool and
    the embedder used (None for vanilla, random examples or given vectors)."""

    conversations: list[Conversation]
    example_counts: list[int] | None
    pool: ExamplePool | None
    embedder: Embedder | None


def _check_unique_ids(records: list[Record], source: str) -> None:
    seen: set[str] = set()
    for index, record in enumerate(records):
        if record.id in seen:
            raise DataError(
                source,
                f"duplicate record id {record.id!r} (record {index + 1}); ids must be unique",
                field="id",
            )
        seen.add(record.id)


def build_conversations(
    records: list[Record],
    config: BuildConfig,
    *,
    lang: str,
    sampler: NegativeTypeSampler,
    vectors: np.ndarray | None = None,
) -> BuildResult:
    """Conversations for ``records`` (the pool, for RA-IT); ``vectors`` skips embedding (row i = record i)."""
    examples: list[list[int]] | None = None
    pool = embedder = None
    if config.method == "ra-it":
        if vectors is None and config.strategy != "random":
            embedder = get_embedder(config.embedder, lang, config.cache_dir)
        pool = ExamplePool(
            records,
            embedder,
            lang,
            vectors=vectors,
            index=config.index,
            stopwords=config.stopwords,
            show_progress=config.show_progress,
        )
        examples = pool.self_retrieve(
            config.k,
            config.strategy,
            K=config.K,
            bm25_threshold=config.bm25_threshold,
            mixed_ratio=config.mixed_ratio,
            seed=config.seed,
        )
    conversations = []
    with progress("conversations", len(records), config.show_progress) as advance:
        for i, record in enumerate(records):
            shots = [records[j] for j in examples[i]] if examples is not None else []
            conversations.append(training_conversation(record, sampler, shots, lang))
            advance(1)
    counts = [len(e) for e in examples] if examples is not None else None
    return BuildResult(conversations, counts, pool, embedder)


def negative_sampler(records: list[Record], config: BuildConfig, lang: str) -> NegativeTypeSampler:
    """The paper's rule (types counted over ``records``, the whole source), or the product recipe when
    ``config`` asks for a number or ratio of negatives (type names embedded for hard ones)."""
    paper = NegativeTypeSampler.from_records(records, seed=config.seed, prob=config.negative_prob)
    if not config.negative_recipe:
        return paper
    counts = Counter(dict(zip(paper.types, paper.weights, strict=True)))
    vectors = None
    if config.negative_sampling != "frequency":
        embedder = get_embedder(config.embedder, lang, config.cache_dir)
        vectors = embedder.encode(paper.types, show_progress=config.show_progress)
    return NegativeRecipe(
        counts,
        config.seed,
        count=config.negatives,
        ratio=config.negative_ratio,
        sampling=config.negative_sampling,
        type_vectors=vectors,
        hard_pool=config.hard_pool,
    )


def write_conversations(path: str | Path, conversations: list[Conversation], fmt: str = "sharegpt") -> None:
    """Atomically write ``.jsonl`` (one per line) or a JSON list (one conversation per line)."""
    path = Path(path)
    rows = (c.to_sharegpt() if fmt == "sharegpt" else c.to_messages() for c in conversations)
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    with atomic_write(path) as handle:
        if path.suffix == ".jsonl":
            handle.writelines(line + "\n" for line in lines)
        else:
            handle.write("[\n" + ",\n".join(lines) + "\n]\n")


def manifest_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".manifest.json")


def build_data(config: BuildConfig) -> dict:
    """Load, subsample, retrieve, write the data file and its manifest; returns the manifest. The output
    is locked while it is built (:func:`rait.locks.output_lock`)."""
    config.validate()
    check_output_file(config.output, resumable=True)  # its manifest hashes the file written
    with output_lock(config.output, what="data file"):
        return _build_data(config)


def _build_data(config: BuildConfig) -> dict:
    started = time.perf_counter()
    records, source_lang = load_source(config.source, config.source_format)
    if not records:
        raise DataError(config.source, "the source has no records")
    _check_unique_ids(records, config.source)
    loaded = time.perf_counter()
    lang = config.lang or source_lang or detect_lang(records)
    sampler = negative_sampler(records, config, lang)
    samples = subsample(records, config.size, config.seed)
    result = build_conversations(samples, config, lang=lang, sampler=sampler)
    built = time.perf_counter()
    output = Path(config.output)
    write_conversations(output, result.conversations, config.format)
    finished = time.perf_counter()

    counts: dict = {
        "source_records": len(records),
        "samples": len(samples),
        "conversations": len(result.conversations),
    }
    with_examples = sum(1 for n in result.example_counts or [] if n)
    counts["questions"] = sum((len(c.turns) - 2) // 2 for c in result.conversations) - with_examples
    counts["empty_answers"] = sum(
        turn.content == "[]" for c in result.conversations for turn in c.turns if turn.role == "assistant"
    )
    embedder_info = None
    timings = {"load": loaded - started}
    if result.pool is not None:
        histogram = Counter(result.example_counts)
        counts["examples_per_sample"] = {str(n): histogram[n] for n in sorted(histogram)}
        counts["fallback_vanilla"] = histogram[0]
        timings.update(result.pool.timings)
    if result.embedder is not None:
        embedder = result.embedder
        embedder_info = {
            "name": embedder.name,
            "embedded": embedder.n_embedded,
            "from_cache": embedder.n_cached,
        }
    timings.update({"build": built - loaded, "write": finished - built, "total": finished - started})
    manifest = {
        "rait_version": rait.__version__,
        "command": "build-data",
        "inputs": {"source": config.source, "source_format": config.source_format},
        "options": config.manifest_options(),
        "seed": config.seed,
        "lang": lang,
        "embedder": embedder_info,
        "counts": counts,
        "output": {"data": str(output), "sha256": sha256_file(output)},
        "timings_s": {name: round(value, 3) for name, value in timings.items()},
    }
    write_json(manifest_path(output), manifest)
    return manifest
