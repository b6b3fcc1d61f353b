"""The distillation pipeline: corpus -> chunks -> seeded sample -> teacher annotation (concurrent, retried,
cached, budgeted) -> output filtering -> ensemble vote -> a "rait" training file and a JSON report."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from rait.console import make_console, progress_bar
from rait.data.formats import write_records
from rait.distill.cache import ResponseCache, request_key
from rait.distill.corpus import (
    TEXT_UNITS,
    Chunk,
    CorpusStats,
    corpus_files,
    iter_chunks,
    load_tokenizer,
    sample_chunks,
)
from rait.distill.filtering import FILTER_RULES, FilterStats, filter_output, resolve_min_agree, vote
from rait.distill.teachers import (
    PROMPTS,
    LocalTeacher,
    OpenAITeacher,
    RequestFailed,
    RetryableError,
    Teacher,
    TeacherSpec,
    load_prompt,
)
from rait.errors import RaitError
from rait.fileio import check_output_file, write_json
from rait.locks import output_lock
from rait.records import DEFAULT_SEED, Mention, Record


@dataclass(slots=True)
class DistillConfig:
    """Everything ``rait distill`` needs. ``teachers`` are specs (see :class:`TeacherSpec`); the report and
    cache default to ``<output stem>.report.json`` / ``<output stem>.cache.jsonl`` beside ``output``."""

    inputs: list[Path]
    output: Path
    lang: str = "en"
    tokenizer: str | None = None
    chunk_tokens: int = 256
    text_unit: str = "file"
    text_field: str = "text"
    sample_size: int | None = None
    seed: int = DEFAULT_SEED
    teachers: list[str] = field(default_factory=lambda: ["local"])
    base_url: str | None = None
    api_key: str | None = None
    temperature: float = 0.0
    max_output_tokens: int | None = None
    timeout: float = 60.0
    prompt_file: Path | None = None
    types: list[str] | None = None
    concurrency: int = 8
    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    max_requests: int | None = None
    max_tokens: int | None = None
    min_agree: str | int | float = "majority"
    max_type_chars: int = 50
    filter_rules: str = "ra-it"
    keep_empty: bool = False
    cache_path: Path | None = None
    report_path: Path | None = None
    show_progress: bool = True

    def resolved_cache_path(self) -> Path:
        return Path(self.cache_path or Path(self.output).with_suffix(".cache.jsonl"))

    def resolved_report_path(self) -> Path:
        return Path(self.report_path or Path(self.output).with_suffix(".report.json"))


def build_teachers(config: DistillConfig) -> list[Teacher]:
    """Teachers from ``config.teachers``; the local one is loaded only when asked for."""
    prompt = load_prompt(config.prompt_file) if config.prompt_file is not None else None
    teachers: list[Teacher] = []
    for spec in map(TeacherSpec.parse, config.teachers):
        if spec.kind == "local":
            teachers.append(LocalTeacher.from_pretrained(spec.model, config.types, config.lang))
        else:
            teachers.append(
                OpenAITeacher(
                    spec.model,
                    base_url=spec.base_url or config.base_url,
                    api_key=config.api_key,
                    prompt=prompt,
                    lang=config.lang,
                    temperature=config.temperature,
                    max_output_tokens=config.max_output_tokens,
                    timeout=config.timeout,
                )
            )
    return teachers


class Budget:
    """Caps on this run's requests sent to paid teachers and on the tokens they report. A request is only
    sent while both are under their caps; answers already in flight may overshoot the token cap."""

    def __init__(self, max_requests: int | None = None, max_tokens: int | None = None):
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.requests = 0
        self.tokens = 0
        self.exhausted = False
        self._lock = threading.Lock()

    def reserve(self) -> bool:
        with self._lock:
            if (self.max_requests is not None and self.requests >= self.max_requests) or (
                self.max_tokens is not None and self.tokens >= self.max_tokens
            ):
                self.exhausted = True
                return False
            self.requests += 1
            return True

    def spend(self, tokens: int) -> None:
        with self._lock:
            self.tokens += tokens

    def to_dict(self) -> dict:
        return {
            "max_requests": self.max_requests,
            "max_tokens": self.max_tokens,
            "requests_sent": self.requests,
            "tokens_used": self.tokens,
            "exhausted": self.exhausted,
        }


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of transient failures: exponential backoff with jitter, or the server's Retry-After."""

    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return min(self.max_delay, self.base_delay * 2**attempt) * (0.5 + 0.5 * rng.random())


@dataclass(slots=True)
class Outcome:
    """The result of one teacher request: ``status`` is ok, cached, failed, budget or stopped."""

    status: str
    output: str | list | None = None
    tokens: int = 0
    reason: str | None = None
    sent: int = 0
    errors: Counter = field(default_factory=Counter)


@dataclass(slots=True)
class RequestStats:
    """Per-teacher request accounting for the report."""

    cached: int = 0
    succeeded: int = 0
    sent: int = 0
    tokens: int = 0
    stopped_by_budget: int = 0
    attempt_errors: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.sent += outcome.sent
        self.tokens += outcome.tokens
        self.attempt_errors.update(outcome.errors)
        if outcome.status == "cached":
            self.cached += 1
        elif outcome.status == "ok":
            self.succeeded += 1
        elif outcome.status == "failed":
            self.failed[outcome.reason] += 1
        elif outcome.status == "budget":
            self.stopped_by_budget += 1

    def to_dict(self) -> dict:
        return {
            "cached": self.cached,
            "succeeded": self.succeeded,
            "sent": self.sent,
            "tokens": self.tokens,
            "stopped_by_budget": self.stopped_by_budget,
            "attempt_errors": dict(sorted(self.attempt_errors.items())),
            "failed": dict(sorted(self.failed.items())),
        }


def run_request(
    teacher: Teacher,
    request: dict,
    key: str,
    cache: ResponseCache,
    budget: Budget,
    policy: RetryPolicy,
    stop: threading.Event,
    rng: random.Random,
) -> Outcome:
    """One request with retries; a success is written to the cache before it is returned."""
    outcome = Outcome("failed")
    for attempt in range(policy.max_retries + 1):
        if stop.is_set():
            outcome.status = "stopped"
            return outcome
        if teacher.paid and not budget.reserve():
            outcome.status = "budget"
            return outcome
        outcome.sent += 1
        try:
            reply = teacher.annotate(request)
        except RetryableError as exc:
            outcome.errors[exc.reason] += 1
            outcome.reason = exc.reason
            if attempt < policy.max_retries:
                stop.wait(policy.delay(attempt, exc.retry_after, rng))
            continue
        except RequestFailed as exc:
            outcome.errors[exc.reason] += 1
            outcome.reason = exc.reason
            return outcome
        except BaseException:
            stop.set()  # a fatal error: no further request starts
            raise
        if teacher.paid:
            budget.spend(reply.tokens)
        cache.put(key, teacher.name, request, reply.output, reply.tokens)
        return Outcome("ok", reply.output, reply.tokens, sent=outcome.sent, errors=outcome.errors)
    return outcome


def annotate_chunks(
    chunks: Sequence[Chunk],
    teachers: Sequence[Teacher],
    cache: ResponseCache,
    budget: Budget,
    policy: RetryPolicy,
    concurrency: int = 8,
    progress: Progress | None = None,
) -> list[list[Outcome]]:
    """``outcomes[chunk][teacher]``. Cached answers are served first; each distinct uncached request is sent
    once (``concurrency`` at a time, in chunk order). A fatal error or interrupt stops the rest; what was
    answered so far is already in the cache."""
    outcomes: list[list[Outcome | None]] = [[None] * len(teachers) for _ in chunks]
    pending: dict[str, tuple[int, dict, list[int]]] = {}
    for ci, chunk in enumerate(chunks):
        for ti, teacher in enumerate(teachers):
            request = teacher.request(chunk.text)
            key = request_key(request)
            hit = cache.get(key)
            if hit is not None:
                outcomes[ci][ti] = Outcome("cached", hit["output"])
            else:
                pending.setdefault(key, (ti, request, []))[2].append(ci)
    task = progress.add_task("annotating", total=len(pending)) if progress is not None else None
    stop = threading.Event()
    rng = random.Random()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {
            pool.submit(run_request, teachers[ti], request, key, cache, budget, policy, stop, rng): key
            for key, (ti, request, _) in pending.items()
        }
        try:
            for future in as_completed(futures):
                ti, _, positions = pending[futures[future]]
                outcome = future.result()
                outcomes[positions[0]][ti] = outcome
                for ci in positions[1:]:  # a repeated passage shares the one request
                    outcomes[ci][ti] = Outcome(outcome.status, outcome.output, reason=outcome.reason)
                if progress is not None:
                    progress.advance(task)
        except BaseException:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return outcomes  # type: ignore[return-value]


def _record(chunk: Chunk, pairs: Sequence[tuple[str, str]]) -> Record:
    ordered = sorted(pairs, key=lambda pair: chunk.text.find(pair[0]))
    return Record(
        id=chunk.id, text=chunk.text, mentions=[Mention(m, t) for m, t in ordered], source="distill"
    )


def assemble(
    chunks: Sequence[Chunk],
    outcomes: Sequence[Sequence[Outcome]],
    teacher_names: Sequence[str],
    min_agree: int,
    max_type_chars: int = 50,
    keep_empty: bool = False,
    rules: str = "ra-it",
    lang: str = "zh",
) -> tuple[list[Record], dict]:
    """Filter every complete chunk's answers, vote, and build the records; returns (records, report part).

    A chunk with a failed or budget-skipped request is left out (a re-run completes it from the cache)."""
    filters = {name: FilterStats() for name in teacher_names}
    requests = {name: RequestStats() for name in teacher_names}
    chunk_counts = Counter({"sampled": len(chunks), "written": 0})
    failures: list[dict] = []
    before_vote = kept_pairs = 0
    records: list[Record] = []
    for chunk, row in zip(chunks, outcomes, strict=True):
        for name, outcome in zip(teacher_names, row, strict=True):
            requests[name].add(outcome)
            if outcome.status == "failed":
                failures.append({"chunk": chunk.id, "teacher": name, "reason": outcome.reason})
        statuses = {outcome.status for outcome in row}
        if statuses - {"ok", "cached"}:
            chunk_counts["request_failed" if "failed" in statuses else "budget_exhausted"] += 1
            continue
        answers = [
            filter_output(o.output, chunk.text, filters[name], chunk.id, max_type_chars, rules, lang)
            for name, o in zip(teacher_names, row, strict=True)
        ]
        if all(answer is None for answer in answers):
            chunk_counts["no_valid_output"] += 1
            continue
        pairs = vote(answers, min_agree)
        before_vote += len({(m, t.casefold()) for answer in answers for m, t in answer or ()})
        kept_pairs += len(pairs)
        if not pairs and not keep_empty:
            chunk_counts["no_entities"] += 1
            continue
        records.append(_record(chunk, pairs))
        chunk_counts["written"] += 1
    report = {
        "chunks": dict(chunk_counts),
        "teachers": {
            name: {"requests": requests[name].to_dict(), "filtering": filters[name].to_dict()}
            for name in teacher_names
        },
        "ensemble": {
            "teachers": len(teacher_names),
            "min_agree": min_agree,
            "pairs_before_vote": before_vote,
            "pairs_kept": kept_pairs,
            "dropped_disagreement": before_vote - kept_pairs,
        },
        "failures": failures,
    }
    return records, report


def distill(
    config: DistillConfig,
    teachers: Sequence[Teacher] | None = None,
    tokenizer=None,
    console: Console | None = None,
) -> dict:
    """Run the whole pipeline; writes the training file and the report, and returns the report.

    ``teachers``/``tokenizer`` override the ones ``config`` names (for library use and tests)."""
    if config.lang not in PROMPTS:
        raise RaitError(f"unknown language {config.lang!r}; choose one of {', '.join(PROMPTS)}")
    if config.filter_rules not in FILTER_RULES:
        raise RaitError(
            f"unknown filter rules {config.filter_rules!r}; choose one of {', '.join(FILTER_RULES)}"
        )
    if config.text_unit not in TEXT_UNITS:
        raise RaitError(f"unknown text unit {config.text_unit!r}; choose one of {', '.join(TEXT_UNITS)}")
    for ok, message in (
        (config.chunk_tokens >= 1, f"--chunk-tokens must be at least 1, got {config.chunk_tokens}"),
        (
            config.sample_size is None or config.sample_size >= 1,
            f"-n must be at least 1, got {config.sample_size}",
        ),
        (config.concurrency >= 1, f"--concurrency must be at least 1, got {config.concurrency}"),
        (config.max_retries >= 0, f"--max-retries must be 0 or more, got {config.max_retries}"),
        (config.timeout > 0, f"--timeout must be positive, got {config.timeout}"),
        (config.max_type_chars >= 1, f"--max-type-chars must be at least 1, got {config.max_type_chars}"),
    ):
        if not ok:
            raise RaitError(message)
    check_output_file(config.output, resumable=True)
    with output_lock(config.output, what="distillation output"):
        return _distill(config, teachers, tokenizer, console)


def _distill(config: DistillConfig, teachers, tokenizer, console) -> dict:
    teachers = list(teachers) if teachers is not None else build_teachers(config)
    names = [teacher.name for teacher in teachers]
    if not teachers or len(set(names)) != len(names):
        raise RaitError(f"need one or more distinct teachers, got {names}")
    try:
        min_agree = resolve_min_agree(config.min_agree, len(teachers))
    except ValueError as exc:
        raise RaitError(str(exc)) from None
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.tokenizer)
    stats = CorpusStats()
    files = corpus_files(config.inputs, stats)
    budget = Budget(config.max_requests, config.max_tokens)
    policy = RetryPolicy(config.max_retries, config.backoff_base, config.backoff_max)
    console = console or make_console(stderr=True)
    with progress_bar(config.show_progress, console) as progress:
        task = progress.add_task("chunking", total=len(files))
        chunk_iter = iter_chunks(
            files,
            tokenizer,
            config.chunk_tokens,
            config.text_unit,
            config.text_field,
            stats,
            progress=lambda: progress.advance(task),
        )
        chunks = sample_chunks(chunk_iter, config.sample_size, config.seed)
        if not chunks:
            raise RaitError(f"the corpus has no text to annotate ({stats.files} file(s), 0 chunks)")
        with ResponseCache(config.resolved_cache_path()) as cache:
            outcomes = annotate_chunks(chunks, teachers, cache, budget, policy, config.concurrency, progress)
    records, report = assemble(
        chunks,
        outcomes,
        names,
        min_agree,
        config.max_type_chars,
        config.keep_empty,
        config.filter_rules,
        config.lang,
    )
    write_records(records, Path(config.output), "rait")
    report = {
        "output": str(config.output),
        "cache": str(config.resolved_cache_path()),
        "corpus": {**stats.to_dict(), "chunk_tokens": config.chunk_tokens, "text_unit": config.text_unit},
        "sample": {"requested": config.sample_size, "seed": config.seed, "sampled": len(chunks)},
        **report,
        "budget": budget.to_dict(),
        "complete": not report["failures"] and not budget.exhausted,
    }
    write_json(config.resolved_report_path(), report)
    return report
