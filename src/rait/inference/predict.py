"""Prediction runs: answer every (passage, type) query of a benchmark or input file and write the
predictions (:func:`predict_records`, :func:`run_predict` with a :class:`PredictConfig`), with in-context
examples from a :class:`rait.retrieval.Retriever`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rait.answers import finish_reason
from rait.console import progress_bar
from rait.data.benchmarks import DEFAULT_MAX_EXAMPLES, sample_passages
from rait.data.formats import detect_lang
from rait.errors import DataError, RaitError
from rait.fileio import JsonlAppender, check_output_file, read_json, write_json
from rait.inference.answerer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODING,
    Answerer,
    PassageQuery,
    check_decoding,
)
from rait.inference.backends import BACKENDS, load_predictor
from rait.inference.chunking import DEFAULT_MAX_CHUNK_TOKENS, with_chunking
from rait.inference.confidence import (
    DEFAULT_MULTI_LABEL,
    DEFAULT_THRESHOLD,
    check_multi_label,
    check_threshold,
)
from rait.inference.entities import answer_mentions, answer_scores, located_entities, select_mentions
from rait.inference.stopping import DEFAULT_MAX_NEW_TOKENS
from rait.locks import output_lock
from rait.precision import DEFAULT_PRECISION
from rait.records import DEFAULT_SEED, QueryPrediction, Record
from rait.retrieval import (
    DEFAULT_BM25_THRESHOLD,
    DEFAULT_NUM_EXAMPLES,
    EXAMPLE_MODES,
    ExamplePool,
    example_retriever,
    get_embedder,
)

__all__ = [
    "ExampleSource",
    "PredictConfig",
    "PredictStats",
    "meta_path",
    "predict_records",
    "query_rows",
    "reselect",
    "run_predict",
]


ExampleSource = Callable[[list[Record]], list[list[Record]]]
"""Given passages, the in-context examples for each (e.g. a :class:`rait.retrieval.Retriever`)."""


@dataclass(slots=True)
class PredictStats:
    """What one prediction run did: passages in the job, already complete before it (resumed), predicted
    now; (passage, type) queries written now, malformed answers among them, answers that hit the
    ``max_new_tokens`` cap and answers stopped in a repetition loop (:mod:`rait.inference.stopping`), passages
    given examples, passages split into chunks (longer than the context or ``max_chunk_tokens``)."""

    n_passages: int = 0
    n_resumed: int = 0
    n_predicted: int = 0
    n_queries: int = 0
    n_malformed: int = 0
    n_capped: int = 0
    n_repetition: int = 0
    n_with_examples: int = 0
    n_chunked: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def query_rows(
    record: Record,
    types: Sequence[str],
    answers: Sequence[str],
    threshold: float | None = None,
    multi_label: bool = True,
) -> list[QueryPrediction]:
    """One :class:`QueryPrediction` per type: gold mentions (and spans when the gold has offsets), the raw
    answer with its mentions' scores, the mentions ``threshold`` and one type per span (unless
    ``multi_label``) drop (:func:`rait.inference.entities.select_mentions`), and the spans of the kept
    mentions."""
    mentions = [answer_mentions(answer)[0] for answer in answers]
    scores = [answer_scores(answer) for answer in answers]
    kept = select_mentions(record.text, mentions, scores, threshold, multi_label)
    rows = []
    for entity_type, answer, type_mentions, type_scores, type_kept in zip(
        types, answers, mentions, scores, kept, strict=True
    ):
        gold_mentions = [m for m in record.mentions if m.type == entity_type]
        gold_spans = (
            [[m.start, m.end] for m in gold_mentions]
            if all(m.start is not None and m.end is not None for m in gold_mentions)
            else None
        )
        found = located_entities(record.text, entity_type, type_kept)
        rows.append(
            QueryPrediction(
                benchmark=record.source,
                record_id=record.id,
                type=entity_type,
                gold=record.answers(entity_type),
                output=answer,
                text=record.text,
                gold_spans=gold_spans,
                predicted_spans=[[e["start"], e["end"]] for e in found if e["found"]],
                finish_reason=finish_reason(answer),
                scores=type_scores,
                dropped=[m for m in type_mentions if m not in type_kept],
            )
        )
    return rows


def reselect(
    predictions: Iterable[QueryPrediction], threshold: float | None, multi_label: bool
) -> list[QueryPrediction]:
    """The rows with ``dropped`` (and ``predicted_spans``) chosen again from their mentions' scores, as
    :func:`query_rows` chooses them: ``threshold`` and, unless ``multi_label``, one type per span over each
    passage's rows. A row with mentions but no ``scores``, or not one per mention, raises ValueError."""
    passages: dict[tuple[str, str], list[QueryPrediction]] = {}
    for row in predictions:
        passages.setdefault((row.benchmark, row.record_id), []).append(row)
    out = []
    for rows in passages.values():
        mentions = [answer_mentions(row.output)[0] for row in rows]
        for row, found in zip(rows, mentions, strict=True):
            query = f"benchmark={row.benchmark!r}, record_id={row.record_id!r}, type={row.type!r}"
            if found and row.scores is None:
                raise ValueError(
                    f"query ({query}) has no mention scores: predict it again to choose by score"
                )
            if row.scores is not None and len(row.scores) != len(found):
                raise ValueError(f"query ({query}) has {len(row.scores)} scores for {len(found)} mentions")
        kept = select_mentions(rows[0].text, mentions, [row.scores for row in rows], threshold, multi_label)
        for row, found, row_kept in zip(rows, mentions, kept, strict=True):
            spans = row.predicted_spans
            if spans is not None:
                located = located_entities(row.text, row.type, row_kept)
                spans = [[e["start"], e["end"]] for e in located if e["found"]]
            dropped = [m for m in found if m not in row_kept]
            out.append(replace(row, dropped=dropped, predicted_spans=spans))
    return out


def check_unique_ids(records: Sequence[Record], output: str | Path) -> None:
    """DataError (naming ``output``) when two records share a benchmark and id: their rows would collide."""
    seen: set[tuple[str, str]] = set()
    for record in records:
        key = (record.source, record.id)
        if key in seen:
            raise DataError(
                output, f"duplicate record id {record.id!r} in benchmark {record.source!r}", field="id"
            )
        seen.add(key)


def predict_records(
    records: Sequence[Record],
    answerer: Answerer,
    output: str | Path,
    *,
    examples: ExampleSource | None = None,
    lang: str | None = None,
    chunk_size: int = 64,
    max_chunk_tokens: int | None = DEFAULT_MAX_CHUNK_TOKENS,
    progress: bool = True,
    threshold: float | None = None,
    multi_label: bool = True,
) -> PredictStats:
    """Answer every (record, type) query and append :class:`QueryPrediction` rows to ``output`` (jsonl).

    Resumable: rows are flushed as each passage completes, and queries already in ``output`` (by benchmark =
    ``record.source``, record id, type) are not written again. Passages go to ``examples`` (retrieval) and the
    model ``chunk_size`` at a time, in chunks fixed by their position in ``records``: a re-run skips the
    chunks done and predicts a partly written chunk whole (writing only its missing rows), so it forms the
    batches an uninterrupted run forms and writes the same answers (bf16 answers depend on which passages
    share a batch). Types are ``record.query_types()``; ``lang`` ``None`` detects each passage's language. A
    passage longer than the model's context or ``max_chunk_tokens`` is answered in sentence chunks
    (:mod:`rait.inference.chunking`): its ``output`` is then the JSON list of the mentions of all chunks.
    Every row keeps its mentions' scores; ``threshold`` and one type per span (unless ``multi_label``) mark
    mentions ``dropped`` (:func:`query_rows`); the defaults drop none (the paper's protocol)."""
    answerer = with_chunking(answerer, max_chunk_tokens)
    chunked_before = getattr(answerer, "n_chunked", 0)
    check_unique_ids(records, output)
    stats = PredictStats(n_passages=len(records))
    with output_lock(output, what="predictions file"), JsonlAppender(output) as appender:
        done = {(row.get("benchmark"), row.get("record_id"), row.get("type")) for row in appender.existing()}
        missing = [{t for t in r.query_types() if (r.source, r.id, t) not in done} for r in records]
        stats.n_resumed = sum(not todo for todo in missing)
        with progress_bar(progress) as bar:
            task = bar.add_task("predicting", total=len(records), completed=stats.n_resumed)
            for start in range(0, len(records), chunk_size):
                chunk = records[start : start + chunk_size]
                if not any(missing[start : start + chunk_size]):
                    continue
                chunk_examples = examples(list(chunk)) if examples else [[] for _ in chunk]
                queries = [
                    PassageQuery(r.text, tuple(r.query_types()), tuple(ex), lang or detect_lang(r.text))
                    for r, ex in zip(chunk, chunk_examples, strict=True)
                ]
                for index, all_answers in answerer.iter_answers(queries):
                    record, todo = chunk[index], missing[start + index]
                    if not todo:
                        continue
                    types = [t for t in record.query_types() if t in todo]
                    answers = [a for t, a in zip(record.query_types(), all_answers, strict=True) if t in todo]
                    for row in query_rows(record, types, answers, threshold, multi_label):
                        appender.append(row.to_dict())
                    stats.n_predicted += 1
                    stats.n_queries += len(types)
                    stats.n_malformed += sum(not answer_mentions(a)[1] for a in answers)
                    stats.n_capped += sum(finish_reason(a) == "length" for a in answers)
                    stats.n_repetition += sum(finish_reason(a) == "repetition" for a in answers)
                    stats.n_with_examples += bool(chunk_examples[index])
                    bar.advance(task)
    stats.n_chunked = getattr(answerer, "n_chunked", 0) - chunked_before
    return stats


@dataclass(slots=True)
class PredictConfig:
    """A ``rait predict`` job of ``model`` / ``adapter`` (:func:`load_predictor`; neither given: the built-in
    model when packaged, recorded by its name). Passages come from registry ``benchmarks`` (test split, at
    most ``max_examples`` sampled with ``seed``) and/or an ``input`` file (at most ``input_max_examples``
    passages, sampled the same way; ``None``: all) read by
    :func:`rait.data.file_benchmarks.load_file_benchmark` (a labelled file in any format is a benchmark named
    ``name``, its codes renamed by ``label_map``; a file of plain lines is passages), whose types ``types``
    sets or overrides; ``columns``/``tag_names``: layout options of :func:`rait.data.formats.load_records`.
    ``examples``: ``none``; ``out-domain`` (k nearest from the training ``pool`` -- a file or a registered
    training source -- kept when their BM25 score reaches ``bm25_threshold``); ``in-domain`` (k nearest from
    ``pool_size`` labelled examples of each benchmark's train split, or of the ``pool`` file). ``stopwords``:
    removed before BM25 (:func:`rait.retrieval.bm25.load_stopwords`). ``allow_identical_examples``: pool
    passages identical to the test passage may be examples, as in the reference (leaks gold). ``decoding``,
    ``threshold``, ``multi_label``: the recommended settings by default (:mod:`rait.inference.confidence`;
    every mention's score is written, the dropped ones are marked); the paper's protocol is ``free``,
    ``None``, ``True``."""

    output: Path
    model: str | None = None
    adapter: str | None = None
    benchmarks: list[str] = field(default_factory=list)
    input: Path | None = None
    input_format: str | None = None
    types: list[str] | None = None
    name: str | None = None
    label_map: str | None = None
    columns: tuple[int, int] | None = None
    tag_names: list[str] | None = None
    max_examples: int | None = DEFAULT_MAX_EXAMPLES
    input_max_examples: int | None = None
    seed: int = DEFAULT_SEED
    examples: str = "none"
    pool: str | None = None
    pool_size: int | None = None
    k: int = DEFAULT_NUM_EXAMPLES
    bm25_threshold: float = DEFAULT_BM25_THRESHOLD
    stopwords: str | None = None
    allow_identical_examples: bool = False
    embedder: str | None = None
    lang: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    stop_repetition: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE
    backend: str = "hf"
    precision: str = DEFAULT_PRECISION
    max_chunk_tokens: int | None = DEFAULT_MAX_CHUNK_TOKENS
    system_prompt: str | None = None  # None: the one the model was trained with (else "none")
    decoding: str = DEFAULT_DECODING
    threshold: float | None = DEFAULT_THRESHOLD
    multi_label: bool = DEFAULT_MULTI_LABEL

    def settings(self) -> dict:
        """What determines the predictions (checked when resuming into an existing output); the precision
        as resolved on this machine, the system prompt as resolved from the model. Options the job ignores
        are stored as None, so that they never block a resume."""
        from rait.builtin import default_model, resolve_builtin
        from rait.models import default_device, trained_system_prompt
        from rait.precision import resolve_precision

        keep = ("adapter", "examples", "pool", "pool_size", "k", "bm25_threshold", "embedder")
        model = default_model(self.model, self.adapter)
        data = {"model": model} | {name: getattr(self, name) for name in keep}
        if self.examples == "none":
            data |= dict.fromkeys(("pool", "pool_size", "k", "bm25_threshold", "embedder"))
        elif self.examples == "in-domain":
            data["bm25_threshold"] = None
        data |= {"lang": self.lang, "max_new_tokens": self.max_new_tokens, "backend": self.backend}
        data["precision"] = resolve_precision(self.precision, default_device())
        data["max_chunk_tokens"] = self.max_chunk_tokens
        data["decoding"] = self.decoding
        data["stop_repetition"] = self.stop_repetition
        data |= {"threshold": self.threshold, "multi_label": self.multi_label}
        data["system_prompt"] = (
            self.system_prompt
            or trained_system_prompt(resolve_builtin(self.adapter), resolve_builtin(model))
            or "none"
        )
        data |= {"seed": self.seed, "max_examples": self.max_examples if self.benchmarks else None}
        data |= {"input": self.input, "input_format": self.input_format, "types": self.types}
        if self.input_max_examples is not None:  # recorded only when set, so older outputs still resume
            data["input_max_examples"] = self.input_max_examples
        data |= {"label_map": self.label_map, "columns": list(self.columns) if self.columns else None}
        data |= {"tag_names": self.tag_names}
        if self.stopwords is not None:  # recorded only when set, so older outputs still resume
            data["stopwords"] = self.stopwords
        if self.allow_identical_examples:
            data["allow_identical_examples"] = True
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def meta_path(output: str | Path) -> Path:
    """``<stem>.meta.json`` beside a predictions file: the settings it was written with."""
    output = Path(output)
    return output.with_name(f"{output.stem}.meta.json")


def check_settings(config: PredictConfig) -> None:
    """Refuse to resume into an output written with other settings; record them for a new output."""
    path = meta_path(config.output)
    settings = config.settings()
    if path.exists() and config.output.exists():
        # older outputs: fp32 on CPU, no system turn, no repetition stop; other settings an older meta file
        # lacks are not checked
        old = {
            "precision": "fp32",
            "system_prompt": "none",
            "stop_repetition": False,
            **read_json(path).get("settings", {}),
        }
        changed = sorted(k for k in settings.keys() & old.keys() if old[k] != settings[k])
        if changed:
            name = changed[0]
            raise RaitError(
                f"{config.output} was written with other settings ({name}: {old.get(name)!r}, now "
                f"{settings.get(name)!r}); use another --output or --overwrite"
            )
    write_json(path, {"settings": settings})


def validate(config: PredictConfig) -> None:
    """Check every option before anything is loaded."""
    from rait.builtin import resolve_builtin
    from rait.data.file_benchmarks import PASSAGE_FORMATS
    from rait.data.formats import LOAD_FORMATS

    for name in (config.model, config.adapter):
        resolve_builtin(name)  # a built-in model named must be packaged
    if not config.benchmarks and config.input is None:
        raise RaitError("nothing to predict: give --benchmark and/or --input")
    if config.input is None:
        for option in ("types", "name", "label_map", "input_format", "columns", "tag_names"):
            if getattr(config, option) is not None:
                flag = "--" + option.replace("_", "-")
                raise RaitError(f"{flag} applies to --input files only (a registered benchmark has its own)")
    formats = (*LOAD_FORMATS, *PASSAGE_FORMATS)
    if config.input_format is not None and config.input_format not in formats:
        raise RaitError(f"unknown --input-format {config.input_format!r}; choose one of {', '.join(formats)}")
    if config.lang not in (None, "en", "zh"):
        raise RaitError(f"unknown --lang {config.lang!r}; choose en or zh")
    if config.backend not in BACKENDS:
        raise RaitError(f"unknown --backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")
    for size in (config.max_examples, config.input_max_examples):
        if size is not None and size < 0:
            raise RaitError(f"--max-examples must be 0 (all) or more, got {size}")
    if config.pool_size is not None and config.pool_size < 1:
        raise RaitError(f"--pool-size must be at least 1, got {config.pool_size}")
    if config.max_new_tokens < 1 or config.batch_size < 1:
        raise RaitError("--max-new-tokens and --batch-size must be at least 1")
    if config.types is not None and not config.types:
        raise RaitError("--types is empty")
    if config.examples not in EXAMPLE_MODES:
        raise RaitError(f"unknown --examples {config.examples!r}; choose one of {', '.join(EXAMPLE_MODES)}")
    if config.examples == "out-domain" and not config.pool:
        raise RaitError(
            "--examples out-domain needs --pool (a training file or a registered training source)"
        )
    if config.examples == "in-domain" and config.input is not None and not config.pool:
        raise RaitError("--examples in-domain with --input needs --pool (labelled examples of that domain)")
    if config.k < 1 and config.examples != "none":
        raise RaitError(f"-k must be at least 1 with --examples {config.examples}")
    check_decoding(config.decoding)
    check_threshold(config.threshold)
    check_multi_label(config.multi_label)


def run_predict(
    config: PredictConfig,
    *,
    progress: bool = True,
    answerer: Answerer | None = None,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> PredictStats:
    """Run a prediction job (see :class:`PredictConfig`), resuming into ``config.output`` if it exists.

    ``answerer`` replaces the model the config names (tests, or a predictor already loaded); ``log`` gets
    a line saying how an input file is read (benchmark name, label map, types); ``overwrite`` starts
    ``config.output`` over instead of resuming into it."""
    validate(config)
    check_output_file(config.output, resumable=True)
    jobs = load_jobs(config, log)
    with output_lock(config.output, what="predictions file"):
        if overwrite:
            config.output.unlink(missing_ok=True)
            meta_path(config.output).unlink(missing_ok=True)
        new = not config.output.exists()
        check_settings(config)
        try:
            return predict_jobs(config, jobs, progress, answerer)
        except BaseException:
            if new and (not config.output.exists() or not config.output.stat().st_size):
                config.output.unlink(missing_ok=True)  # failed before its first row: leave nothing behind
                meta_path(config.output).unlink(missing_ok=True)
            raise


Job = tuple[list[Record], str | None, str | None]
"""A prediction job: its records, their language (None: detected per passage), the registry benchmark they
come from (None: an input file)."""


def load_jobs(config: PredictConfig, log: Callable[[str], None] | None = None) -> list[Job]:
    """The records of a validated config: each registry benchmark's test sample, then the ``input`` file."""
    from rait.data.benchmarks import get_spec, load_benchmark
    from rait.data.file_benchmarks import load_file_benchmark

    jobs: list[Job] = []
    for name in config.benchmarks:
        spec = get_spec(name)
        records = load_benchmark(spec.name, "test", max_examples=config.max_examples, seed=config.seed)
        jobs.append((records, config.lang or spec.lang, spec.name))
    if config.input is not None:
        records, info = load_file_benchmark(
            config.input,
            config.input_format,
            name=config.name,
            label_map=config.label_map,
            types=config.types,
            lang=config.lang,
            columns=config.columns,
            tag_names=config.tag_names,
        )
        total = len(records)
        records = sample_passages(records, config.input_max_examples, config.seed)
        if log is not None:
            sampled = f"{len(records)} of {total}" if len(records) < total else str(total)
            what = f"{sampled} passages of {config.input} ({info.format})"
            if info.labelled:
                mapped = f"label map {info.label_map}" if info.label_map else "labels as in the file"
                what += f" as benchmark {info.name!r}, {mapped}, types: {', '.join(records[0].query_types())}"
            log(what)
        jobs.append((records, config.lang, None))
    return jobs


def config_predictor(config: PredictConfig) -> Answerer:
    """The predictor of the model a config names, with its decoding options."""
    return load_predictor(
        config.model,
        adapter=config.adapter,
        backend=config.backend,
        lang=config.lang or "en",
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        precision=config.precision,
        system_prompt=config.system_prompt,
        decoding=config.decoding,
        stop_repetition=config.stop_repetition,
    )


def predict_jobs(
    config: PredictConfig,
    jobs: list[Job],
    progress: bool,
    answerer: Answerer | None,
    pools: dict | None = None,
) -> PredictStats:
    """Predict ``jobs`` into ``config.output`` (resuming) with ``answerer``, else the config's model. The
    example pools the config asks for are built here, into ``pools`` (by benchmark; None: the ``pool``
    file) when given, so that later calls with the same dict reuse them."""
    answerer = answerer or config_predictor(config)
    pools = {} if pools is None else pools
    total = PredictStats()
    for records, lang, benchmark in jobs:
        source = None
        if config.examples != "none":
            key = benchmark if config.pool is None else None
            if key not in pools:
                embedder = get_embedder(config.embedder) if config.embedder else None
                options = {"seed": config.seed, "stopwords": config.stopwords}
                pools[key] = (
                    ExamplePool.from_benchmark(benchmark, config.pool_size, embedder=embedder, **options)
                    if config.pool is None  # in-domain, from the benchmark's train split
                    else ExamplePool.from_source(config.pool, embedder, size=config.pool_size, **options)
                )
            pool = pools[key]
            source = example_retriever(
                config.examples,
                pool,
                k=config.k,
                bm25_threshold=config.bm25_threshold,
                seed=config.seed,
                allow_identical=config.allow_identical_examples,
            )
        stats = predict_records(
            records,
            answerer,
            config.output,
            examples=source,
            lang=lang,
            max_chunk_tokens=config.max_chunk_tokens,
            progress=progress,
            threshold=config.threshold,
            multi_label=config.multi_label,
        )
        for name in PredictStats.__dataclass_fields__:
            setattr(total, name, getattr(total, name) + getattr(stats, name))
    return total
