"""The benchmark registry on small fake data directories, and the repo's own sample data."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rait.cli import app
from rait.data.benchmarks import (
    BENCHMARKS,
    TRAINING_SOURCES,
    data_dir,
    get_spec,
    is_available,
    load_benchmark,
    sample_path,
)
from rait.data.formats import LOAD_FORMATS, LoadStats, load_records
from rait.errors import DataError, RaitError

FIX = Path(__file__).parent / "fixtures" / "formats"

PAPER_BENCHMARKS = {
    "crossner_ai",
    "crossner_literature",
    "crossner_music",
    "crossner_politics",
    "crossner_science",
    "mit_movie",
    "mit_restaurant",
    "weibo",
    "msra",
    "boson",
    "cluener",
    "cmeee",
    "yidu",
    "peoples_daily",
    "ontonotes4",
}


def test_registry_covers_the_paper() -> None:
    assert set(BENCHMARKS) == PAPER_BENCHMARKS
    assert set(TRAINING_SOURCES) == {"pile_ner_subset", "sky_ner_subset"}
    for spec in BENCHMARKS.values():
        assert spec.lang in ("en", "zh") and spec.fmt in LOAD_FORMATS and spec.kind == "benchmark"
        assert "test" in spec.splits
        assert spec.types and len(set(spec.types)) == len(spec.labels)  # codes map to distinct names
    for spec in TRAINING_SOURCES.values():
        assert (
            spec.kind == "train"
            and spec.labels is None
            and spec.types == ()
            and list(spec.splits) == ["train"]
        )


def test_cluener_and_cmeee_test_and_dev_are_seeded_halves_of_dev(tmp_path) -> None:
    """As the RA-IT paper: test = a fixed random half of the dev file, dev = the other half."""
    line = '{"text": "王芳%d在杭州。", "entity_list": [{"entity_index": {"begin": 0, "end": 2}, '
    line += '"entity_type": "name", "entity": "王芳"}]}\n'
    root = _fake_root(tmp_path, "eval/zh/cluener/dev.jsonl", text="".join(line % i for i in range(101)))
    test = load_benchmark("cluener", "test", data_dir=root, max_examples=None)
    dev = load_benchmark("cluener", "dev", data_dir=root, max_examples=None)
    assert (len(test), len(dev)) == (50, 51)
    index = [int(r.id.rsplit("-", 1)[1]) for r in test + dev]
    assert sorted(index) == list(range(101)) and index[:50] == sorted(index[:50])  # disjoint, file order
    assert all(r.text == f"王芳{i}在杭州。" for r, i in zip(test + dev, index, strict=True))
    assert [r.id for r in load_benchmark("cluener", "test", data_dir=root, seed=7)] == [r.id for r in test]
    assert index[:50] != list(range(50))  # shuffled, not the first half of the file
    for name in ("cluener", "cmeee"):
        assert get_spec(name).halves == {"test": 0, "dev": 1}


def test_names_aliases_and_uniner_file_stems() -> None:
    assert get_spec("CrossNER_AI").name == "crossner_ai"
    assert get_spec("CrossNER_literature").name == "crossner_literature"
    assert get_spec("mit-restaurant").name == "mit_restaurant"
    assert get_spec("MIT-Movie").name == "mit_movie"
    assert get_spec("ren").name == get_spec("peoples_daily_1998").name == "peoples_daily"
    assert get_spec("Pile_NER_Subset").name == "pile_ner_subset"
    with pytest.raises(RaitError, match="unknown benchmark 'conll03'"):
        get_spec("conll03")


def test_english_names_are_uniner_style() -> None:
    assert get_spec("crossner_ai").labels["programlang"] == "program language"
    assert get_spec("crossner_ai").labels["organisation"] == "organization"
    assert "misc" not in get_spec("crossner_music").labels and get_spec("crossner_music").dropped == ("misc",)
    assert get_spec("mit_movie").labels["RATINGS_AVERAGE"] == "average ratings"
    assert get_spec("mit_restaurant").labels["Restaurant_Name"] == "Restaurant Name"
    assert get_spec("weibo").labels["PER.NAM"] == "人名"


def _fake_root(tmp_path: Path, rel: str, fixture: str | None = None, text: str | None = None) -> Path:
    target = tmp_path / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if fixture is not None:
        shutil.copy(FIX / fixture, target)
    else:
        target.write_text(text, encoding="utf-8")
    return tmp_path


def test_load_maps_labels_and_sets_ids_types_source(tmp_path) -> None:
    root = _fake_root(tmp_path, "eval/zh/cluener/train.jsonl", "cluener.jsonl")
    records = load_benchmark("cluener", "train", data_dir=root)
    assert [r.id for r in records] == ["cluener-train-0", "cluener-train-1"]
    assert all(r.source == "cluener" and r.types == list(get_spec("cluener").types) for r in records)
    assert [(m.text, m.type, m.start) for m in records[0].mentions] == [
        ("王芳", "人名", 0),
        ("杭州", "地址", 3),
        ("阿里巴巴", "公司", 5),
    ]


def test_weibo_and_people_daily_from_fixtures(tmp_path) -> None:
    root = _fake_root(tmp_path, "eval/zh/weibo/weiboNER_2nd_conll.test", "weibo.conll")
    _fake_root(tmp_path, "eval/zh/peoples_daily_1998/example.test", "char_bio.txt")
    weibo = load_benchmark("weibo", data_dir=root)
    assert [(m.text, m.type) for r in weibo for m in r.mentions] == [
        ("李明", "人名"),
        ("他", "人物泛称"),
        ("上海", "行政区名"),
    ]
    daily = load_benchmark("Ren", data_dir=root)
    assert [(m.text, m.type) for r in daily for m in r.mentions] == [
        ("北京", "地名"),
        ("王芳", "人名"),
        ("新华社", "机构名"),
    ]


def _bio_sentences(n: int, label: str = "person") -> str:
    return "".join(f"Person{i}\tB-{label}\nspoke\tO\nin\tO\nItaly\tB-misc\n\n" for i in range(n))


def test_misc_is_dropped_and_unknown_labels_are_errors(tmp_path) -> None:
    root = _fake_root(tmp_path, "eval/en/bio/CrossNER/ai/test.txt", text=_bio_sentences(2))
    records = load_benchmark("crossner_ai", data_dir=root)
    assert [[(m.text, m.type) for m in r.mentions] for r in records] == [
        [("Person0", "person")],
        [("Person1", "person")],
    ]
    assert "person" in records[0].types and "misc" not in records[0].types
    _fake_root(tmp_path, "eval/en/bio/CrossNER/music/test.txt", text=_bio_sentences(1, "programlang"))
    with pytest.raises(DataError, match="label 'programlang' is not in the crossner_music label map"):
        load_benchmark("crossner_music", data_dir=root)


def test_sampling_is_seeded_bounded_and_in_file_order(tmp_path) -> None:
    root = _fake_root(tmp_path, "eval/en/bio/CrossNER/ai/test.txt", text=_bio_sentences(50))
    first = load_benchmark("crossner_ai", data_dir=root, max_examples=10, seed=1)
    again = load_benchmark("crossner_ai", data_dir=root, max_examples=10, seed=1)
    other = load_benchmark("crossner_ai", data_dir=root, max_examples=10, seed=2)
    ids = [r.id for r in first]
    assert len(ids) == 10 and ids == [r.id for r in again] and ids != [r.id for r in other]
    indices = [int(i.rsplit("-", 1)[1]) for i in ids]
    assert indices == sorted(indices)
    assert all(r.mentions[0].text == f"Person{i}" for r, i in zip(first, indices, strict=True))
    assert len(load_benchmark("crossner_ai", data_dir=root, max_examples=None)) == 50
    assert len(load_benchmark("crossner_ai", data_dir=root)) == 50  # under the default 2,000: all kept


def test_multi_file_splits_are_concatenated(tmp_path) -> None:
    root = _fake_root(tmp_path, "eval/zh/yidu/train1.jsonl", "cluener.jsonl")
    _fake_root(tmp_path, "eval/zh/yidu/train2.jsonl", "cluener.jsonl")
    stats = LoadStats()
    with pytest.raises(DataError, match="label 'name' is not in the yidu label map"):
        load_benchmark("yidu", "train", data_dir=root, stats=stats)
    assert stats.records == 2  # the first file was read before the unknown label stopped the load


def test_missing_files_splits_and_data_dir(tmp_path, monkeypatch) -> None:
    with pytest.raises(DataError, match="ontonotes4 test file not found.*LDC"):
        load_benchmark("ontonotes4", data_dir=tmp_path)
    assert not is_available("ontonotes4", data_dir=tmp_path)
    with pytest.raises(RaitError, match="msra has no 'train' split; it has test"):
        load_benchmark("msra", "train", data_dir=tmp_path)
    monkeypatch.setenv("RAIT_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    root = _fake_root(tmp_path, "eval/zh/boson/test.jsonl", "boson.jsonl")
    assert is_available("boson") and len(load_benchmark("boson")) == 2 and root == tmp_path


def test_benchmarks_cli_lists_everything(tmp_path) -> None:
    _fake_root(tmp_path, "eval/zh/boson/test.jsonl", "boson.jsonl")
    result = CliRunner().invoke(app, ["benchmarks", "--data-dir", str(tmp_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in result.output.splitlines() if "│" in line]
    rows = {row[0]: row for row in cells if row[0]}
    assert set(rows) >= PAPER_BENCHMARKS | set(TRAINING_SOURCES)
    assert rows["boson"][2:6] == ["zh", "6", "train,dev,test", "yes"]
    assert rows["msra"][5] == "no" and rows["pile_ner_subset"][3] == "open"


# ----------------------------------------------------------------------------------------- sample data


@pytest.mark.parametrize(
    ("lang", "split", "count"),
    [("en", "train", 30), ("en", "test", 10), ("zh", "train", 22), ("zh", "test", 8)],
)
def test_sample_data_is_packaged_and_spans_match(lang: str, split: str, count: int) -> None:
    path = sample_path(lang, split)
    resource = files("rait").joinpath("resources", "sample", f"{lang}_{split}.jsonl")
    assert resource.is_file() and Path(str(resource)) == path
    records = load_records(path)  # the rait loader checks every span against its text
    assert len(records) == count and len({r.id for r in records}) == count
    for record in records:
        assert record.mentions
        for m in record.mentions:
            assert record.text[m.start : m.end] == m.text
        if split == "test":  # test passages are also asked about at least one absent type
            assert set(record.types) > {m.type for m in record.mentions}
        else:
            assert record.types is None


def test_sample_data_has_varied_types() -> None:
    en = {m.type for r in load_records(sample_path("en", "train")) for m in r.mentions}
    assert {
        "person",
        "organization",
        "location",
        "date",
        "product",
        "award",
        "disease",
        "programming language",
    } <= en
    zh = {m.type for r in load_records(sample_path("zh", "train")) for m in r.mentions}
    assert {"人名", "地名", "机构名", "时间", "公司", "疾病", "药物"} <= zh
    with pytest.raises(ValueError, match="no sample data"):
        sample_path("fr", "train")
