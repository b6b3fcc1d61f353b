"""UniversalNER-exact scoring: parsing, normalisation, golden numbers, file errors, real eval files, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rait.answers import PROTOCOLS, parse_answer_items
from rait.cli import app
from rait.data.benchmarks import data_dir
from rait.errors import DataError
from rait.evaluation import (
    EvalReport,
    evaluate,
    evaluate_file,
    evaluate_files,
    normalize_answer,
    parse_answer,
    render_table,
)
from rait.records import QueryPrediction


def _uniner_files() -> list[Path]:
    root = data_dir()
    return sorted((root / "eval" / "en" / "uniner_json").glob("*.json")) if root else []


def qp(benchmark: str, record_id: str, gold: list[str], output: str) -> QueryPrediction:
    return QueryPrediction(benchmark, record_id, "type", gold, output)


# Hand-made rows with hand-computed counts.
#  A1: gold {paris, london}, pred {paris, berlin}            -> gold 2, pred 2, correct 1
#  A2: gold {louvre}, pred ["Louvre", "louvre."] = {louvre}  -> gold 1, pred 1, correct 1 (de-duplicated)
#  A3: gold {}, pred []                                      -> 0, 0, 0
#  A4: gold {rome}, output "I think Rome" (unparseable)      -> gold 1, pred 0, correct 0, unparseable 1
#  A: gold 4, pred 3, correct 2: P = 2/3 = 66.67, R = 2/4 = 50.00, F1 = 2(2/3)(1/2)/(2/3 + 1/2) = 4/7 = 57.14
#  B1: gold ["Alan Turing", "alan turing"] = {alan turing}, pred {alan turing, turing} -> 1, 2, 1
#  B2: gold {acl}, pred []                                   -> 1, 0, 0
#  B: gold 2, pred 2, correct 1: P = R = F1 = 50.00
#  Average (macro): P = (66.67 + 50)/2 = 58.33, R = 50.00, F1 = (57.14 + 50)/2 = 53.57
ROWS = [
    QueryPrediction("A", "a1", "city", ["Paris", "London"], '["paris", "Berlin"]'),
    QueryPrediction("A", "a2", "museum", ["The Louvre"], '["Louvre", "louvre."]'),
    QueryPrediction("A", "a3", "river", [], "[]"),
    QueryPrediction("A", "a4", "city", ["Rome"], "I think Rome"),
    QueryPrediction("B", "b1", "person", ["Alan Turing", "alan turing"], '["Alan Turing", "Turing"]'),
    QueryPrediction("B", "b2", "conference", ["ACL"], "[]"),
]


def _write_rows(path: Path, rows: list[QueryPrediction]) -> Path:
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("An apple a day", "apple day"),
        ("theory of the anthem", "theory of anthem"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("rock-and-roll!", "rockandroll"),  # punctuation dropped, not replaced by a space
        ("  New\tYork \n City ", "new york city"),
        ("ÄRZTE", "ärzte"),
        ("the", ""),
        ("北京，上海", "北京，上海"),  # only ASCII punctuation is removed, as upstream
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    ("text", "mentions", "ok"),
    [
        ('["Paris", "the paris", "PARIS."]', ["paris"], True),  # de-duplicated after normalisation
        ('["y", "x", "y"]', ["y", "x"], True),  # first-seen order
        ('  ["x"]\n', ["x"], True),
        ('["x"] and then some chatter', ["x"], True),  # only the leading list is read
        ("[]", [], True),
        ('Answer: ["x"]', [], False),  # the list must start the answer
        ('["x",\n "y"]', [], False),  # upstream regex does not cross lines
        ('["a]b"]', ["ab"], True),  # a ] inside a mention (upstream's regex would stop there)
        ('["x"], ["y"]', ["x"], True),
        ('[1, "x"]', [], False),
        ('[["x", "y"]]', [], False),
        ("['x']", [], False),  # Python literal, not JSON
        ('["x"', [], False),
        ("", [], False),
        ("[" * 5000 + "]", [], False),
    ],
)
def test_parse_answer(text, mentions, ok):
    assert parse_answer(text) == (mentions, ok)


@pytest.mark.parametrize(
    ("text", "uniner", "ra_it"),
    [
        ('Answer: ["x"]', None, ["x"]),  # ra-it finds the list anywhere
        ('["x"] then ["y"]', ["x"], ["x"]),  # the first list
        ('I think [so.\n["y"]', None, ["y"]),  # the first [ with a ] after it on its line
        ('see [x] and ["y"]', None, None),  # that list is not JSON: no second chance, as re.search
        ('Sure: ["CD4+ [T] cells", "IL-2"]', None, ["CD4+ [T] cells", "IL-2"]),
        ("no list", None, None),
        ('Answer:\n["x",\n"y"]', None, None),
    ],
)
def test_protocols_find_the_list_at_the_start_or_anywhere(text, uniner, ra_it):
    assert parse_answer_items(text, "uniner") == uniner
    assert parse_answer_items(text, "ra-it") == ra_it
    with pytest.raises(ValueError, match="ra-it"):
        parse_answer_items(text, "raits")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gold_as_prediction_scores_100_with_brackets_in_mentions(protocol):
    golds = [["NF-kappa B [p50]", "IL-2"], ["[3H]thymidine"], []]
    rows = [qp("X", str(i), gold, json.dumps(gold)) for i, gold in enumerate(golds)]
    report = evaluate(rows, protocol=protocol)
    assert report.protocol == protocol and report.benchmarks["X"].n_unparseable == 0
    assert f"{report.average_f1:.2f}" == "100.00"
    assert EvalReport.from_dict(report.to_dict()).protocol == protocol


def test_golden_numbers():
    report = evaluate(ROWS)
    a, b = report.benchmarks["A"], report.benchmarks["B"]
    assert list(report.benchmarks) == ["A", "B"]
    assert (a.n_queries, a.n_gold, a.n_pred, a.n_correct, a.n_unparseable) == (4, 4, 3, 2, 1)
    assert (b.n_queries, b.n_gold, b.n_pred, b.n_correct, b.n_unparseable) == (2, 2, 2, 1, 0)
    assert (a.precision, a.recall, a.f1) == pytest.approx((200 / 3, 50.0, 400 / 7), abs=1e-6)
    assert (b.precision, b.recall, b.f1) == pytest.approx((50.0, 50.0, 50.0), abs=1e-6)
    assert report.average_precision == pytest.approx((200 / 3 + 50) / 2, abs=1e-6)
    assert report.average_recall == pytest.approx(50.0, abs=1e-6)
    assert report.average_f1 == pytest.approx((400 / 7 + 50) / 2, abs=1e-6)
    assert (report.n_queries, report.n_unparseable) == (6, 1)


def test_counts_are_kept_per_sentence_summed_over_its_types():
    rows = [*ROWS, QueryPrediction("A", "a1", "person", ["Hugo"], '["Hugo", "Zola"]')]
    report = evaluate(rows)
    # a1: city (1 correct, 2 predicted, 2 gold) + person (1, 2, 1); the rest as in the golden numbers
    assert report.sentences == {
        "A": {"a1": [2, 4, 3], "a2": [1, 1, 1], "a3": [0, 0, 0], "a4": [0, 0, 1]},
        "B": {"b1": [1, 2, 1], "b2": [0, 0, 1]},
    }
    a = report.benchmarks["A"]
    sums = [sum(c[i] for c in report.sentences["A"].values()) for i in range(3)]
    assert sums == [a.n_correct, a.n_pred, a.n_gold]


def test_duplicate_predictions_count_once():
    # Without de-duplication this would be 1 correct of 3 predicted (P = 33.33).
    report = evaluate([qp("X", "1", ["Kafka"], '["Kafka", "kafka", "Kafka."]')])
    score = report.benchmarks["X"]
    assert (score.n_pred, score.n_correct) == (1, 1)
    assert round(score.precision, 2) == 100.0


def test_unparseable_outputs_are_empty_and_counted():
    rows = [
        qp("X", "1", ["x"], "no entities here"),
        qp("X", "2", ["y"], "['y']"),  # Python literal: unparseable
        qp("X", "3", ["z"], '["z"]'),
    ]
    score = evaluate(rows).benchmarks["X"]
    assert (score.n_unparseable, score.n_pred, score.n_correct, score.n_gold) == (2, 1, 1, 3)


def test_no_predictions_is_an_error():
    with pytest.raises(ValueError, match="no predictions"):
        evaluate([])


SPAN_ROWS = [
    # gold {(0,5), (10,16)}; predicted [(0,5), (0,5), (10,15)] -> de-duplicated 2, correct 1: P = R = 50
    QueryPrediction("S", "s1", "city", ["Paris", "London"], '["Paris", "London"]', "Paris and London",
                    gold_spans=[[0, 5], [10, 16]], predicted_spans=[[0, 5], [0, 5], [10, 15]]),
]  # fmt: skip


def test_strict_spans_match_offsets_not_strings():
    assert round(evaluate(SPAN_ROWS).average_f1, 2) == 100.0  # the strings all match
    report = evaluate(SPAN_ROWS, strict_spans=True)
    score = report.benchmarks["S"]
    assert (score.n_gold, score.n_pred, score.n_correct) == (2, 2, 1)
    assert report.strict_spans and score.f1 == pytest.approx(50.0, abs=1e-6)
    with pytest.raises(ValueError, match="gold_spans and predicted_spans"):
        evaluate(ROWS, strict_spans=True)


def test_report_round_trip_and_table():
    report = evaluate(ROWS)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["average"]["f1"] == pytest.approx((400 / 7 + 50) / 2, abs=1e-6)
    assert data["benchmarks"]["A"]["n_unparseable"] == 1
    assert EvalReport.from_dict(data) == report
    with pytest.raises(ValueError, match="not an evaluation report"):
        EvalReport.from_dict({"benchmarks": {"A": {"n_queries": 1}}, "strict_spans": False})
    console = Console(record=True, width=120)
    console.print(render_table(report))
    lines = console.export_text().splitlines()
    row_a = next(line for line in lines if line.startswith("│ A "))
    average = next(line for line in lines if "Average" in line)
    assert re.findall(r"\d+\.\d\d|\d+", row_a) == ["4", "66.67", "50.00", "57.14", "1", "0", "0"]
    assert re.findall(r"\d+\.\d\d|\d+", average) == ["6", "58.33", "50.00", "53.57", "1", "0", "0"]


def test_capped_and_looped_answers_are_counted(tmp_path):
    rows = [
        QueryPrediction("X", "1", "t", ["a"], '["a"]', finish_reason="stop"),
        QueryPrediction("X", "2", "t", ["b"], '["b", "c", "d', finish_reason="length"),
        QueryPrediction("X", "3", "t", ["c"], '["c", "c", "c", "c', finish_reason="repetition"),
        QueryPrediction("Y", "1", "t", ["e"], '["e"]'),  # an answerer that does not report a finish reason
    ]
    report = evaluate(rows)
    x = report.benchmarks["X"]
    assert (x.n_capped, x.n_repetition, x.n_unparseable) == (1, 1, 2)
    assert (report.n_capped, report.n_repetition) == (1, 1)
    data = report.to_dict()
    assert data["average"]["n_capped"] == 1 and data["benchmarks"]["X"]["n_repetition"] == 1
    assert EvalReport.from_dict(data) == report
    for row in data["benchmarks"].values():  # a report written before these counts existed
        del row["n_capped"], row["n_repetition"]
    assert EvalReport.from_dict(data).n_capped == 0
    path = _write_rows(tmp_path / "preds.jsonl", rows)
    assert evaluate_file(path).n_capped == 1
    bad = dict(rows[0].to_dict(), finish_reason="eos")
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="finish_reason") as info:
        evaluate_file(path)
    assert info.value.line == 1


def test_evaluate_file_reads_predictions(tmp_path):
    path = _write_rows(tmp_path / "preds.jsonl", ROWS)
    assert evaluate_file(path) == evaluate(ROWS)
    second = _write_rows(tmp_path / "more.jsonl", [qp("C", "c1", ["x"], '["x"]')])
    assert list(evaluate_files([path, second]).benchmarks) == ["A", "B", "C"]


GOOD = json.dumps(ROWS[0].to_dict())


@pytest.mark.parametrize(
    ("bad_line", "field", "message"),
    [
        ({k: v for k, v in ROWS[0].to_dict().items() if k != "output"}, "output", "missing"),
        ({**ROWS[0].to_dict(), "record_id": 3}, "record_id", "expected a string"),
        ({**ROWS[0].to_dict(), "gold": "Paris"}, "gold", "list of mention strings"),
        ({**ROWS[0].to_dict(), "score": 0.5}, "score", "unknown field"),
        ({**ROWS[0].to_dict(), "predicted_spans": [[3, 1]]}, "predicted_spans", "integer pairs"),
        ([1, 2], None, "expected a JSON object"),
        ('{"benchmark": ', None, "invalid JSON"),
    ],
)
def test_malformed_row_names_file_line_field(tmp_path, bad_line, field, message):
    path = tmp_path / "preds.jsonl"
    bad = bad_line if isinstance(bad_line, str) else json.dumps(bad_line)
    path.write_text(GOOD + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        evaluate_file(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)


def test_file_level_errors(tmp_path):
    duplicated = _write_rows(tmp_path / "dup.jsonl", [ROWS[0], ROWS[1], ROWS[0]])
    with pytest.raises(DataError, match="duplicate query") as info:
        evaluate_file(duplicated)
    assert info.value.line == 3
    plain = _write_rows(tmp_path / "plain.jsonl", ROWS)
    with pytest.raises(DataError, match="strict-spans") as info:
        evaluate_file(plain, strict_spans=True)
    assert (info.value.line, info.value.field) == (1, "gold_spans")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no predictions"):
        evaluate_file(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        evaluate_file(tmp_path / "missing.jsonl")


def _gold_queries(path: Path) -> list[tuple[str, str, str]]:
    """(id, type, gold answer) for each 'What describes X in the text?' question of a UniNER eval file."""
    queries = []
    for conv in json.loads(path.read_text(encoding="utf-8")):
        turns = conv["conversations"]
        for question, answer in zip(turns, turns[1:], strict=False):
            match = re.fullmatch(r"What describes (.+) in the text\?", question["value"])
            if question["from"] == "human" and match and answer["from"] == "gpt":
                queries.append((conv["id"], match.group(1), answer["value"]))
    return queries


@pytest.mark.real_data
@pytest.mark.parametrize("path", _uniner_files(), ids=lambda p: p.stem)
def test_real_eval_files_gold_scores_100_and_empty_scores_0(path):
    queries = _gold_queries(path)
    assert queries
    gold_run = [QueryPrediction(path.stem, i, t, json.loads(a), a) for i, t, a in queries]
    report = evaluate(gold_run)
    score = report.benchmarks[path.stem]
    assert score.n_queries == len(queries) and score.n_gold > 0 and score.n_unparseable == 0
    assert f"{score.precision:.2f} {score.recall:.2f} {score.f1:.2f}" == "100.00 100.00 100.00"
    empty = evaluate([QueryPrediction(path.stem, i, t, json.loads(a), "[]") for i, t, a in queries])
    assert (empty.benchmarks[path.stem].n_pred, empty.benchmarks[path.stem].n_unparseable) == (0, 0)
    assert f"{empty.average_f1:.2f}" == "0.00"


def test_cli_evaluate(tmp_path):
    runner = CliRunner()
    path = _write_rows(tmp_path / "preds.jsonl", ROWS)
    result = runner.invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 0, result.output
    assert "Average" in result.output and "53.57" in result.output
    saved = json.loads((tmp_path / "preds.metrics.json").read_text(encoding="utf-8"))
    assert saved["average"]["f1"] == pytest.approx((400 / 7 + 50) / 2, abs=1e-6)

    spans = _write_rows(tmp_path / "spans.jsonl", SPAN_ROWS)
    out = tmp_path / "reports" / "span.json"
    result = runner.invoke(app, ["evaluate", str(spans), "--output", str(out), "--strict-spans"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["benchmarks"]["S"]["n_correct"] == 1

    result = runner.invoke(app, ["evaluate", str(path), "--strict-spans"])
    assert result.exit_code != 0 and isinstance(result.exception, DataError)

    out = tmp_path / "ra_it.json"
    result = runner.invoke(app, ["evaluate", str(path), "--protocol", "ra-it", "-o", str(out)])
    assert result.exit_code == 0 and "ra-it protocol" in result.output
    assert json.loads(out.read_text(encoding="utf-8"))["protocol"] == "ra-it"
    result = runner.invoke(app, ["evaluate", str(path), "--protocol", "fuzzy"])
    assert result.exit_code != 0 and "ra-it" in str(result.exception)
