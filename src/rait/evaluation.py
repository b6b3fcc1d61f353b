"""UniversalNER-style scoring: micro precision/recall/F1 over (passage, type) queries, per benchmark.

The metric reproduces ``parser``, ``normalize_answer`` and ``NEREvaluator`` of universal-ner/universal-ner,
``src/eval/evaluate.py`` (commit 4e454fec), applied to responses cleaned as in its ``src/utils.py``
``get_response`` (surrounding whitespace stripped). Per query, the answer's JSON list is normalised and
de-duplicated; every predicted item counts once in ``n_pred`` and, when it is among the query's gold items,
once in ``n_correct``; every gold item counts once in ``n_gold``. P = correct/(pred + 1e-10),
R = correct/(gold + 1e-10), F1 = 2PR/(P + R + 1e-10), reported in percent. The average over benchmarks is
the macro mean of the per-benchmark scores, as in the RA-IT paper's tables.

Two protocols decide where the answer's list is looked for (``PROTOCOLS``):

- ``uniner`` (UniversalNER's ``re.match``): the list must start the answer;
- ``ra-it`` (the RA-IT repo's ``re.search``, Emma1066/Retrieval-Augmented-IT-OpenNER,
  ``src/llm_tuning/evaluation/evaluate.py``, which scored the paper's numbers): the list may start anywhere;
  it starts at the first ``[`` that has a ``]`` after it on the same line.

Deliberate differences from both upstreams:
- The list is read with a JSON decoder from where it starts, so a mention that contains ``]`` parses
  (upstream's non-greedy ``\\[(.*?)\\]`` cuts the list at that ``]`` and fails). Where upstream parses, the
  result is the same; like upstream, a list spanning lines does not parse.
- Gold mentions come as a list (``QueryPrediction.gold``) and are normalised directly, never re-parsed from
  an answer string: a perfect answer scores 100 also when a gold mention contains ``]``.
- Unparseable outputs score as empty answers, as upstream, but are also counted (``n_unparseable``);
  an ``ra-it`` answer with no list at all counts there too (RA-IT counts only JSON failures).
- Optional span-level scoring (``strict_spans``) matches ``(start, end)`` pairs instead of normalised strings.

Answers that hit the decoding cap (``finish_reason`` ``length``) and answers stopped in a repetition loop
(``repetition``, :mod:`rait.inference.stopping`) are counted too (``n_capped``, ``n_repetition``); they score
as whatever they parse to.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rich.table import Table

from rait.answers import FINISH_REASONS, check_protocol, parse_answer_items
from rait.console import escape
from rait.errors import DataError
from rait.fileio import read_jsonl
from rait.records import QueryPrediction

_EPS = 1e-10
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_COUNTS = ("n_queries", "n_gold", "n_pred", "n_correct", "n_unparseable")
_STOP_COUNTS = ("n_capped", "n_repetition")  # answers that hit the length cap / stopped in a loop


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop ASCII punctuation, drop articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def parse_answer(text: str, protocol: str = "uniner") -> tuple[list[str], bool]:
    """Normalised, de-duplicated mentions of one answer (first-seen order), and whether it parsed.

    What parses is decided by :func:`parse_answer_items`; an unparseable answer scores as ``[]``."""
    items = parse_answer_items(text, protocol)
    if items is None:
        return [], False
    return list(dict.fromkeys(normalize_answer(item) for item in items)), True


@dataclass(frozen=True, slots=True)
class BenchmarkScore:
    """Counts of one benchmark; precision/recall/F1 (percent) follow from them."""

    benchmark: str
    n_queries: int
    n_gold: int
    n_pred: int
    n_correct: int
    n_unparseable: int
    n_capped: int = 0
    n_repetition: int = 0

    @property
    def precision(self) -> float:
        return 100 * self.n_correct / (self.n_pred + _EPS)

    @property
    def recall(self) -> float:
        return 100 * self.n_correct / (self.n_gold + _EPS)

    @property
    def f1(self) -> float:
        p, r = self.n_correct / (self.n_pred + _EPS), self.n_correct / (self.n_gold + _EPS)
        return 100 * 2 * p * r / (p + r + _EPS)

    def to_dict(self) -> dict:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass(slots=True)
class EvalReport:
    """Scores per benchmark (in first-seen order) and their macro average."""

    benchmarks: dict[str, BenchmarkScore]
    strict_spans: bool = False
    protocol: str = "uniner"
    # per benchmark, per record id: [n_correct, n_pred, n_gold] of the sentence's queries; a detail of the
    # counts above, outside to_dict and equality
    sentences: dict[str, dict[str, list[int]]] = field(default_factory=dict, compare=False)

    def _mean(self, metric: str) -> float:
        return sum(getattr(s, metric) for s in self.benchmarks.values()) / len(self.benchmarks)

    @property
    def average_precision(self) -> float:
        return self._mean("precision")

    @property
    def average_recall(self) -> float:
        return self._mean("recall")

    @property
    def average_f1(self) -> float:
        return self._mean("f1")

    def _total(self, count: str) -> int:
        return sum(getattr(s, count) for s in self.benchmarks.values())

    n_queries = property(lambda self: self._total("n_queries"))
    n_unparseable = property(lambda self: self._total("n_unparseable"))
    n_capped = property(lambda self: self._total("n_capped"))  # answers that hit the length cap
    n_repetition = property(lambda self: self._total("n_repetition"))  # answers stopped in a loop

    def to_dict(self) -> dict:
        return {
            "metric": "UniversalNER micro P/R/F1 in percent; average = macro mean over benchmarks",
            "protocol": self.protocol,
            "strict_spans": self.strict_spans,
            "benchmarks": {
                name: {k: v for k, v in s.to_dict().items() if k != "benchmark"}
                for name, s in self.benchmarks.items()
            },
            "average": {
                "precision": self.average_precision,
                "recall": self.average_recall,
                "f1": self.average_f1,
                "n_benchmarks": len(self.benchmarks),
                "n_queries": self.n_queries,
                "n_unparseable": self.n_unparseable,
                "n_capped": self.n_capped,
                "n_repetition": self.n_repetition,
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> EvalReport:
        """Rebuild from ``to_dict`` output; the scores are recomputed from the counts."""
        try:
            benchmarks = {
                name: BenchmarkScore(
                    name,
                    **{k: int(row[k]) for k in _COUNTS},
                    **{k: int(row.get(k, 0)) for k in _STOP_COUNTS},  # older reports lack them
                )
                for name, row in data["benchmarks"].items()
            }
            protocol = check_protocol(data.get("protocol", "uniner"))
            return cls(benchmarks, strict_spans=bool(data["strict_spans"]), protocol=protocol)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not an evaluation report: bad or missing {exc}") from None


def evaluate(
    predictions: Iterable[QueryPrediction], strict_spans: bool = False, protocol: str = "uniner"
) -> EvalReport:
    """Score query predictions per ``benchmark``, finding each answer's list as ``protocol`` says; the
    mentions a row marks ``dropped`` (below the run's threshold, or not the best type of their span) are
    not predicted (:func:`rait.inference.predict.reselect` chooses them again from the rows' scores).

    With ``strict_spans`` every row must carry ``gold_spans`` and ``predicted_spans``; items are then the
    de-duplicated ``(start, end)`` pairs. ``n_unparseable`` always counts outputs ``parse_answer`` rejects.
    The counts are also kept per sentence (``EvalReport.sentences``) for bootstrap intervals."""
    tallies: dict[str, dict[str, int]] = {}
    sentences: dict[str, dict[str, list[int]]] = {}
    for row in predictions:
        mentions, parsed = parse_answer(row.output, check_protocol(protocol))
        if row.dropped:
            kept = {normalize_answer(m) for m in parse_answer_items(row.output) or [] if m not in row.dropped}
            gone = {normalize_answer(m) for m in row.dropped} - kept
            mentions = [m for m in mentions if m not in gone]
        if strict_spans:
            if row.gold_spans is None or row.predicted_spans is None:
                query = f"benchmark={row.benchmark!r}, record_id={row.record_id!r}, type={row.type!r}"
                raise ValueError(
                    f"strict span scoring needs gold_spans and predicted_spans; query ({query}) lacks them"
                )
            predicted: list = list(dict.fromkeys(tuple(span) for span in row.predicted_spans))
            gold: set = {tuple(span) for span in row.gold_spans}
        else:
            predicted = mentions
            gold = {normalize_answer(mention) for mention in row.gold}
        correct = sum(item in gold for item in predicted)
        tally = tallies.setdefault(row.benchmark, dict.fromkeys(_COUNTS + _STOP_COUNTS, 0))
        tally["n_capped"] += row.finish_reason == "length"
        tally["n_repetition"] += row.finish_reason == "repetition"
        tally["n_queries"] += 1
        tally["n_gold"] += len(gold)
        tally["n_pred"] += len(predicted)
        tally["n_correct"] += correct
        tally["n_unparseable"] += not parsed
        sentence = sentences.setdefault(row.benchmark, {}).setdefault(row.record_id, [0, 0, 0])
        sentence[0] += correct
        sentence[1] += len(predicted)
        sentence[2] += len(gold)
    if not tallies:
        raise ValueError("no predictions to evaluate")
    scores = {name: BenchmarkScore(name, **t) for name, t in tallies.items()}
    return EvalReport(scores, strict_spans, protocol, sentences)


# 0, 0.05, ..., 0.9, then finer where the scores crowd: 0.92, ..., 0.98, 0.99
SWEEP_THRESHOLDS = (*(round(0.05 * i, 2) for i in range(19)), 0.92, 0.94, 0.96, 0.98, 0.99)


def sweep(
    predictions: Sequence[QueryPrediction],
    choose: Callable[[Sequence[QueryPrediction], float], Sequence[QueryPrediction]],
    thresholds: Sequence[float] = SWEEP_THRESHOLDS,
    strict_spans: bool = False,
    protocol: str = "uniner",
) -> list[tuple[float, EvalReport]]:
    """The report at each threshold of the rows ``choose(predictions, threshold)`` keeps (e.g.
    :func:`rait.inference.predict.reselect` with a ``multi_label``): the precision-recall curve."""
    return [
        (t, evaluate(choose(predictions, t), strict_spans=strict_spans, protocol=protocol))
        for t in thresholds
    ]


_STRING_FIELDS = ("benchmark", "record_id", "type", "output", "text")
_REQUIRED = ("benchmark", "record_id", "type", "gold", "output")
_KNOWN = {f.name for f in fields(QueryPrediction)}


def _check_spans(path: Path, line: int, name: str, value) -> None:
    if not isinstance(value, list) or not all(
        isinstance(span, list)
        and len(span) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in span)
        and 0 <= span[0] <= span[1]
        for span in value
    ):
        raise DataError(path, "expected a list of [start, end] integer pairs", line=line, field=name)


def _read_predictions(path: Path, require_spans: bool) -> Iterator[tuple[int, QueryPrediction]]:
    """Validated rows of a predictions jsonl with their line numbers."""
    for line, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise DataError(path, "expected a JSON object (a QueryPrediction)", line=line)
        unknown = sorted(row.keys() - _KNOWN)
        if unknown:
            raise DataError(path, f"unknown field (expected {sorted(_KNOWN)})", line=line, field=unknown[0])
        for name in _REQUIRED:
            if name not in row:
                raise DataError(path, "missing", line=line, field=name)
        for name in _STRING_FIELDS:
            if name in row and not isinstance(row[name], str):
                raise DataError(path, "expected a string", line=line, field=name)
        if not isinstance(row["gold"], list) or not all(isinstance(m, str) for m in row["gold"]):
            raise DataError(path, "expected a list of mention strings", line=line, field="gold")
        if row.get("finish_reason") not in (None, *FINISH_REASONS):
            raise DataError(
                path, f"expected one of {', '.join(FINISH_REASONS)} or null", line=line, field="finish_reason"
            )
        scores = row.get("scores")
        if scores is not None and not (
            isinstance(scores, list)
            and all(isinstance(x, int | float) and not isinstance(x, bool) and 0 <= x <= 1 for x in scores)
        ):
            raise DataError(
                path, "expected a list of numbers from 0 to 1, or null", line=line, field="scores"
            )
        dropped = row.get("dropped")
        if dropped is not None and not (
            isinstance(dropped, list) and all(isinstance(m, str) for m in dropped)
        ):
            raise DataError(path, "expected a list of mention strings, or null", line=line, field="dropped")
        for name in ("gold_spans", "predicted_spans"):
            if row.get(name) is not None:
                _check_spans(path, line, name, row[name])
            elif require_spans:
                raise DataError(path, "needed by --strict-spans but missing", line=line, field=name)
        if require_spans:
            _check_spans_in_text(path, line, row)
        yield line, QueryPrediction.from_dict(row)


def _check_spans_in_text(path: Path, line: int, row: dict) -> None:
    """Span scoring needs spans that lie in the row's text, and gold spans that cover gold mentions."""
    text = row.get("text") or ""
    if not text:
        raise DataError(
            path,
            "needed by --strict-spans (spans are checked against it) but missing",
            line=line,
            field="text",
        )
    for name in ("gold_spans", "predicted_spans"):
        for start, end in row[name]:
            if end > len(text):
                raise DataError(
                    path,
                    f"span [{start}, {end}) is outside the text (length {len(text)})",
                    line=line,
                    field=name,
                )
            if name == "gold_spans" and text[start:end] not in row["gold"]:
                raise DataError(
                    path,
                    f"span [{start}, {end}) is {text[start:end]!r} in the text, not a gold mention",
                    line=line,
                    field=name,
                )


def evaluate_files(
    paths: Sequence[str | Path], *, strict_spans: bool = False, protocol: str = "uniner"
) -> EvalReport:
    """Score one or more predictions jsonl files (rows of ``QueryPrediction.to_dict()``) together.

    A malformed row or a (benchmark, record_id, type) query seen twice raises DataError (file, line)."""
    rows = read_prediction_files(paths, strict_spans=strict_spans)
    return evaluate(rows, strict_spans=strict_spans, protocol=protocol)


def read_prediction_files(
    paths: Sequence[str | Path], *, strict_spans: bool = False
) -> list[QueryPrediction]:
    """The validated rows of predictions jsonl files (see :func:`evaluate_files`)."""
    rows: list[QueryPrediction] = []
    seen: dict[tuple[str, str, str], tuple[Path, int]] = {}
    for path in map(Path, paths):
        for line, row in _read_predictions(path, strict_spans):
            key = (row.benchmark, row.record_id, row.type)
            if key in seen:
                first_path, first_line = seen[key]
                raise DataError(
                    path, f"duplicate query {key}, first seen in {first_path}, line {first_line}", line=line
                )
            seen[key] = (path, line)
            rows.append(row)
    if not rows:
        raise DataError(", ".join(map(str, paths)), "no predictions to evaluate")
    return rows


def evaluate_file(path: str | Path, *, strict_spans: bool = False, protocol: str = "uniner") -> EvalReport:
    """Score one predictions jsonl file; see ``evaluate_files``."""
    return evaluate_files([path], strict_spans=strict_spans, protocol=protocol)


def render_table(report: EvalReport) -> Table:
    """The report as a paper-style table: one row per benchmark, then the macro Average."""
    title = f"Zero-shot NER, micro P/R/F1 (%), {report.protocol} protocol" + (
        ", span-level" if report.strict_spans else ""
    )
    table = Table(title=title)
    table.add_column("Benchmark")
    for column in ("Queries", "P", "R", "F1", "Unparseable", "Hit cap", "Looped"):
        table.add_column(column, justify="right")
    for name, s in report.benchmarks.items():
        scores = (f"{s.precision:.2f}", f"{s.recall:.2f}", f"{s.f1:.2f}")
        stops = (str(s.n_capped), str(s.n_repetition))
        table.add_row(escape(name), str(s.n_queries), *scores, str(s.n_unparseable), *stops)
    table.add_section()
    table.add_row(
        "Average",
        str(report.n_queries),
        f"{report.average_precision:.2f}",
        f"{report.average_recall:.2f}",
        f"{report.average_f1:.2f}",
        str(report.n_unparseable),
        str(report.n_capped),
        str(report.n_repetition),
        style="bold",
    )
    return table


def curve_points(points: Sequence[tuple[float, EvalReport]], multi_label: bool) -> dict:
    """A :func:`sweep` as JSON: per threshold, the average and per-benchmark precision, recall and F1."""
    return {
        "multi_label": multi_label,
        "points": [
            {
                "threshold": t,
                "precision": r.average_precision,
                "recall": r.average_recall,
                "f1": r.average_f1,
                "benchmarks": {
                    name: {"precision": s.precision, "recall": s.recall, "f1": s.f1}
                    for name, s in r.benchmarks.items()
                },
            }
            for t, r in points
        ],
    }


def render_curve(curve: dict) -> Table:
    """The precision-recall curve of a :func:`curve_points` dict: one row per threshold (averages)."""
    kind = "every type" if curve["multi_label"] else "one type per span"
    table = Table(title=f"Precision-recall by score threshold ({kind}), average over benchmarks (%)")
    for column in ("Threshold", "P", "R", "F1"):
        table.add_column(column, justify="right")
    for point in curve["points"]:
        table.add_row(
            f"{point['threshold']:.2f}",
            f"{point['precision']:.2f}",
            f"{point['recall']:.2f}",
            f"{point['f1']:.2f}",
        )
    return table
