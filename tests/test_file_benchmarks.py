"""Your own labelled file as a benchmark: label maps, negative queries, naming, sniffing, duplicate types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rait.data.file_benchmarks import benchmark_name, dedupe_types, load_file_benchmark
from rait.data.labels import BUILTIN_MAPS, detect_label_map, parse_label_map
from rait.errors import DataError, RaitError
from rait.evaluation import evaluate_file, evaluate_files
from rait.inference import Answerer, PredictConfig, run_predict

FIX = Path(__file__).parent / "fixtures" / "benchmarks"
CONLL = FIX / "conll2003" / "test.txt"
FABNER = FIX / "fabner" / "test.txt"


class Oracle(Answerer):
    """A perfect model: answers each question with the gold mentions of that type (type names as asked)."""

    lang = "en"

    def __init__(self, gold: dict[tuple[str, str], list[str]]):
        self.gold = gold
        self.asked: list[tuple[str, str]] = []

    def iter_answers(self, queries):
        for index, query in enumerate(queries):
            self.asked += [(query.text, t) for t in query.types]
            yield index, [json.dumps(self.gold.get((query.text, t), [])) for t in query.types]


def _oracle(records) -> Oracle:
    return Oracle({(r.text, t): r.answers(t) for r in records for t in r.query_types()})


def test_builtin_map_is_chosen_for_an_exact_label_set_and_applied_to_gold_and_questions():
    records, info = load_file_benchmark(CONLL)
    assert (info.name, info.label_map, info.format) == ("conll2003", "conll2003", "conll")
    assert records[0].query_types() == ["person", "organization", "location", "miscellaneous"]
    assert [(m.text, m.type) for m in records[0].mentions] == [
        ("EU", "organization"),
        ("German", "miscellaneous"),
    ]


def test_a_perfect_model_scores_100_and_every_passage_is_asked_every_type(tmp_path):
    records, _ = load_file_benchmark(CONLL)
    oracle = _oracle(records)
    out = tmp_path / "p.jsonl"
    stats = run_predict(PredictConfig(output=out, input=CONLL), progress=False, answerer=oracle)
    assert stats.n_queries == 3 * 4  # 3 passages x 4 types, most with empty gold
    score = evaluate_file(out).benchmarks["conll2003"]
    assert (score.f1, score.n_queries, score.n_gold) == (pytest.approx(100), 12, 4)


def test_types_renaming_with_a_label_map_scores_like_the_gold(tmp_path):
    """Renamed questions with raw gold used to score 0 silently; a label map renames both."""
    records, info = load_file_benchmark(FABNER, label_map="MANP=manufacturing process,MATE=material")
    assert info.label_map == "inline"
    out = tmp_path / "p.jsonl"
    config = PredictConfig(output=out, input=FABNER, label_map=str(FIX / "fabner_labels.yaml"))
    run_predict(config, progress=False, answerer=_oracle(records))
    assert evaluate_file(out).benchmarks["fabner"].f1 == pytest.approx(100)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {r["type"] for r in rows} == {"manufacturing process", "material"}
    assert len(rows) == 4  # 2 passages x 2 types: the passage with no mention is asked too


def test_types_that_match_no_gold_type_are_an_error_listing_the_gold_types():
    with pytest.raises(RaitError, match="none is a type of .*its types: MANP, MATE"):
        load_file_benchmark(FABNER, types=["person", "location"])
    records, _ = load_file_benchmark(FABNER, types=["MATE", "MATE", " "])
    assert records[0].query_types() == ["MATE"]


def test_label_map_missing_a_code_and_dropping_a_code(tmp_path):
    with pytest.raises(DataError, match="no name for label.*'MATE'"):
        load_file_benchmark(FABNER, label_map="MANP=process")
    records, _ = load_file_benchmark(FABNER, label_map="MANP=process,MATE=")
    assert records[0].query_types() == ["process"] and [m.text for m in records[0].mentions] == [
        "Laser sintering"
    ]
    bad = tmp_path / "map.yaml"
    bad.write_text("MANP: [a, b]\n", encoding="utf-8")
    with pytest.raises(DataError, match="field 'MANP'"):
        parse_label_map(str(bad))
    with pytest.raises(RaitError, match="built-in map"):
        parse_label_map("no_such_map")


def test_builtin_maps_detection_uses_the_language():
    assert detect_label_map({"PER", "ORG", "LOC"}, "en").name == "wikiann"
    assert detect_label_map({"PER", "ORG", "LOC"}, "zh").name == "msra"
    assert detect_label_map({"PER", "ORG"}, "en") is None
    assert {"conll2003", "ontonotes5", "wikiann", "wnut17", "resume", "boson", "msra", "weibo"} <= set(
        BUILTIN_MAPS
    )


def test_names_from_split_files_come_from_their_folder_and_do_not_collide(tmp_path):
    assert benchmark_name(CONLL) == "conll2003"
    assert benchmark_name(tmp_path / "mydata.char.bmes") == "mydata"
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        run_predict(
            PredictConfig(output=folder / "p.jsonl", input=CONLL),
            progress=False,
            answerer=_oracle(load_file_benchmark(CONLL)[0]),
        )
    with pytest.raises(DataError, match="duplicate query"):  # the same file twice is a duplicate ...
        evaluate_files([first / "p.jsonl", second / "p.jsonl"])
    run_predict(
        PredictConfig(output=tmp_path / "c.jsonl", input=FABNER, name="fab"),
        progress=False,
        answerer=Oracle({}),
    )
    report = evaluate_files(
        [first / "p.jsonl", tmp_path / "c.jsonl"]
    )  # ... two datasets named test.txt are not
    assert list(report.benchmarks) == ["conll2003", "fab"]
    ids = [json.loads(line)["record_id"] for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert ids[0] == "fab-0"


def test_a_conll_txt_input_is_sniffed_not_read_as_lines(tmp_path):
    records, info = load_file_benchmark(CONLL)
    assert info.format == "conll" and len(records) == 3
    plain = tmp_path / "passages.txt"
    plain.write_text("\ufeffAda Lovelace met Babbage.\n\nRain.\n", encoding="utf-8")
    records, info = load_file_benchmark(plain, types="person")
    assert info.format == "text" and [r.text for r in records] == ["Ada Lovelace met Babbage.", "Rain."]
    assert records[0].query_types() == ["person"]  # a string is one type, not six letters
    with pytest.raises(DataError, match="no entity types"):
        load_file_benchmark(plain)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_file_benchmark(empty, types="person")


def test_duplicate_types_in_records_are_deduplicated(tmp_path):
    path = tmp_path / "dup.jsonl"
    record = {"id": "a", "text": "Ada met Bo", "mentions": [], "types": ["person", "person", "city"]}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    records, _ = load_file_benchmark(path)
    assert records[0].query_types() == ["person", "city"]
    assert dedupe_types(None) is None
    with pytest.raises(RaitError):
        dedupe_types([1, 2])
