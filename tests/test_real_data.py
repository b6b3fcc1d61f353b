"""Every loader and benchmark on the real files in ../shared/data (skipped when absent).

The pinned counts were computed independently of rait with one-off awk/grep/json scripts: sentences =
blank-line-separated blocks, mentions = ``B-`` tags (+ orphan ``I-`` tags, listed as repairs), JSON items
and their entity lists counted directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rait.data.benchmarks import BENCHMARKS, get_spec, load_benchmark
from rait.data.formats import LoadStats, detect_format, load_records
from rait.errors import DataError

pytestmark = pytest.mark.real_data

# path, detected format, records, mentions, repaired items
FILES = [
    ("eval/en/bio/CrossNER/ai/test.txt", "bio", 431, 1809, 0),
    ("eval/en/bio/CrossNER/literature/test.txt", "bio", 416, 2266, 0),
    ("eval/en/bio/CrossNER/music/test.txt", "bio", 465, 3336, 0),
    ("eval/en/bio/CrossNER/politics/test.txt", "bio", 651, 4209, 0),
    ("eval/en/bio/CrossNER/science/test.txt", "bio", 543, 3089, 0),
    ("eval/en/bio/MIT/movie/test.txt", "bio-tagfirst", 2443, 5339, 0),
    ("eval/en/bio/MIT/restaurant/test.txt", "bio-tagfirst", 1521, 3151, 0),
    ("eval/en/uniner_json/CrossNER_AI.json", "uniner", 431, 1624, 0),
    ("eval/en/uniner_json/CrossNER_literature.json", "uniner", 416, 2025, 0),
    ("eval/en/uniner_json/CrossNER_music.json", "uniner", 465, 3163, 0),
    ("eval/en/uniner_json/CrossNER_politics.json", "uniner", 650, 3943, 0),
    ("eval/en/uniner_json/CrossNER_science.json", "uniner", 543, 2568, 0),
    ("eval/en/uniner_json/mit-restaurant.json", "uniner", 1520, 3150, 0),
    ("eval/en/gliner_json/CrossNER_AI/test.json", "gliner", 431, 1804, 0),
    ("eval/en/gliner_json/CrossNER_literature/test.json", "gliner", 416, 2263, 0),
    ("eval/en/gliner_json/CrossNER_music/test.json", "gliner", 465, 3334, 0),
    ("eval/en/gliner_json/CrossNER_politics/test.json", "gliner", 650, 4200, 0),
    ("eval/en/gliner_json/CrossNER_science/test.json", "gliner", 543, 3088, 0),
    ("eval/en/gliner_json/mit-movie/test.json", "gliner", 2442, 5338, 0),
    ("eval/en/gliner_json/mit-restaurant/test.json", "gliner", 1520, 3150, 0),
    ("eval/zh/weibo/weiboNER_2nd_conll.train", "weibo", 1350, 1895, 10),
    ("eval/zh/weibo/weiboNER_2nd_conll.dev", "weibo", 270, 389, 0),
    ("eval/zh/weibo/weiboNER_2nd_conll.test", "weibo", 270, 418, 4),
    ("eval/zh/msra/test.jsonl", "entity-list-jsonl", 4365, 4706, 0),
    ("eval/zh/boson/train.jsonl", "boson", 1637, 13652, 0),
    ("eval/zh/boson/dev.jsonl", "boson", 184, 1413, 0),
    ("eval/zh/boson/test.jsonl", "boson", 179, 1482, 0),
    ("eval/zh/cluener/train.jsonl", "entity-list-jsonl", 10748, 23338, 0),
    ("eval/zh/cluener/dev.jsonl", "entity-list-jsonl", 1343, 2982, 0),
    ("eval/zh/cmeee/train.txt", "cmeee", 15000, 61794, 2),
    ("eval/zh/cmeee/dev.txt", "cmeee", 5000, 20300, 0),
    ("eval/zh/yidu/test.jsonl", "entity-list-jsonl", 379, 6002, 0),
    ("eval/zh/yidu/train1.jsonl", "entity-list-jsonl", 400, 7342, 0),
    ("eval/zh/yidu/train2.jsonl", "entity-list-jsonl", 600, 10311, 0),
    ("eval/zh/peoples_daily_1998/example.dev", "char-bio", 2318, 3819, 0),
    ("eval/zh/peoples_daily_1998/example.test", "char-bio", 4636, 7707, 0),
    ("train/pile_ner_subset/passages_bio.txt", "bio", 2217, 30978, 156),
    ("train/pile_ner_subset/qa_rows.jsonl", "pile-qa", 882, 1582, 0),
    ("train/sky_ner_subset/sky_ner_937.json", "skyner", 937, 12096, 0),
]


@pytest.mark.parametrize(("rel", "fmt", "n_records", "n_mentions", "n_repaired"), FILES)
def test_real_file_counts(shared_data: Path, rel, fmt, n_records, n_mentions, n_repaired) -> None:
    path = shared_data / rel
    assert detect_format(path) == fmt
    stats = LoadStats()
    records = load_records(path, stats=stats)
    assert (len(records), stats.mentions, len(stats.repaired), stats.skipped) == (
        n_records,
        n_mentions,
        n_repaired,
        [],
    )
    for record in records:
        for m in record.mentions:
            assert m.start is None or record.text[m.start : m.end] == m.text


def test_weibo_positions_are_stripped(shared_data: Path) -> None:
    path = shared_data / "eval/zh/weibo/weiboNER_2nd_conll.test"
    records = load_records(path)
    token_lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    # one character per token line, except 16 tokens that are two U+FFFD characters
    assert sum(len(r.text) for r in records) == token_lines + 16 == 14842 + 16
    assert records[0].text.startswith("一节课的时间真心感动了李开复感动")
    assert records[0].mentions[0].text == "李开复" and records[0].mentions[0].type == "PER.NAM"


def test_cmeee_empty_spans_are_the_two_known_lines(shared_data: Path) -> None:
    stats = LoadStats()
    load_records(shared_data / "eval/zh/cmeee/train.txt", stats=stats)
    assert [s.split(": ", 1)[0].rsplit(", ", 1)[1] for s in stats.repaired] == ["line 6052", "line 6422"]


def test_pile_qa_groups_rows_by_document(shared_data: Path) -> None:
    rows = [json.loads(line) for line in (shared_data / "train/pile_ner_subset/qa_rows.jsonl").open()]
    records = load_records(shared_data / "train/pile_ner_subset/qa_rows.jsonl")
    assert len(rows) == 1320 and sum(len(r.types) for r in records) == 1320
    assert all(m.text in r.text for r in records for m in r.mentions)


UNINER_FILES = {
    "crossner_ai": "CrossNER_AI",
    "crossner_literature": "CrossNER_literature",
    "crossner_music": "CrossNER_music",
    "crossner_politics": "CrossNER_politics",
    "crossner_science": "CrossNER_science",
    "mit_restaurant": "mit-restaurant",
}
# Gold mentions missing from UniversalNER's files: each ends its sentence (their converter drops those).
UNINER_MISSING = {
    "crossner_ai": 4,
    "crossner_literature": 2,
    "crossner_music": 2,
    "crossner_politics": 1,
    "crossner_science": 1,
    "mit_restaurant": 0,
}


@pytest.mark.parametrize("name", sorted(UNINER_FILES))
def test_benchmarks_match_universalner_eval_files(shared_data: Path, name: str) -> None:
    uniner = load_records(shared_data / "eval/en/uniner_json" / f"{UNINER_FILES[name]}.json")
    ours = load_benchmark(name, max_examples=None)
    assert {tuple(sorted(r.types)) for r in uniner} == {tuple(sorted(get_spec(name).types))}
    assert get_spec(UNINER_FILES[name]).name == name  # the file stem is an alias
    # UniversalNER's files miss the last sentence of politics and restaurant test sets
    assert len(ours) == len(uniner) + (name in ("crossner_politics", "mit_restaurant"))
    missing = 0
    for mine, theirs in zip(ours, uniner, strict=False):
        assert mine.text == theirs.text
        for entity_type in theirs.types:
            gold = set(theirs.answers(entity_type))
            extra = [m for m in mine.mentions if m.type == entity_type and m.text not in gold]
            assert gold <= set(mine.answers(entity_type))
            assert all(m.end == len(mine.text) for m in extra)
            missing += len(extra)
    assert missing == UNINER_MISSING[name]


def test_english_names_match_gliner_labels(shared_data: Path) -> None:
    folders = {**UNINER_FILES, "mit_movie": "mit-movie"}
    for name, folder in folders.items():
        labels = json.loads((shared_data / "eval/en/gliner_json" / folder / "labels.json").read_text())
        assert set(labels) - {"else"} == set(get_spec(name).types), name


def test_boson_names_match_abb2labelname(shared_data: Path) -> None:
    names = json.loads((shared_data / "eval/zh/boson/abb2labelname.json").read_text(encoding="utf-8"))
    assert list(names.values()) == list(get_spec("boson").types)


# test records after sampling (paper: at most 2,000), mentions in them
BENCHMARK_COUNTS = {
    "crossner_ai": (431, 1628),
    "crossner_literature": (416, 2027),
    "crossner_music": (465, 3165),
    "crossner_politics": (651, 3951),
    "crossner_science": (543, 2569),
    "mit_movie": (2000, 4399),
    "mit_restaurant": (1521, 3151),
    "weibo": (270, 418),
    "msra": (2000, 2227),
    "boson": (179, 1482),
    "cluener": (671, 1480),  # test = a seeded half of dev
    "cmeee": (2000, 8195),  # test = a seeded half of dev (2,500), sampled
    "yidu": (379, 6002),
    "peoples_daily": (2000, 3484),
}


@pytest.mark.parametrize("name", sorted(BENCHMARK_COUNTS))
def test_benchmark_test_sets(shared_data: Path, name: str) -> None:
    records = load_benchmark(name)
    assert (len(records), sum(len(r.mentions) for r in records)) == BENCHMARK_COUNTS[name]
    types = set(BENCHMARKS[name].types)
    assert all(r.types == list(BENCHMARKS[name].types) and r.source == name for r in records)
    assert all(m.type in types for r in records for m in r.mentions)
    assert [r.id for r in load_benchmark(name)] == [r.id for r in records]  # deterministic


def test_ontonotes4_is_registered_but_absent(shared_data: Path) -> None:
    with pytest.raises(DataError, match="ontonotes4 test file not found"):
        load_benchmark("ontonotes4")


def test_training_sources_load_by_name(shared_data: Path) -> None:
    pile = load_benchmark("pile_ner_subset", "train", max_examples=None)
    sky = load_benchmark("sky_ner_subset", "train", max_examples=None)
    assert (len(pile), len(sky)) == (2217, 937)
    assert all(r.types is None for r in pile + sky)
    labels = set(
        (shared_data / "train/pile_ner_subset/labels.txt").read_text(encoding="utf-8").split("\n")
    ) - {""}
    assert len(labels) == 391 and {m.type for r in pile for m in r.mentions} <= labels
    assert "field of study" in {m.type for r in pile for m in r.mentions}
