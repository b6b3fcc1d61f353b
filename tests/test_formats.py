"""Loaders and writers on small hand-written fixtures, bad input, detection and the convert CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rait.cli import app
from rait.data.formats import (
    LOAD_FORMATS,
    LoadStats,
    convert,
    detect_format,
    detect_lang,
    load_pile_ner_hub,
    load_records,
    write_records,
)
from rait.errors import DataError, RaitError
from rait.records import Conversation, Mention, Record
from rait.templates import build_conversation

FIX = Path(__file__).parent / "fixtures" / "formats"

# file -> (detected format, [(text, [(mention, type, start, end)], types)])
EXPECTED = {
    "bio.txt": (
        "bio",
        [
            (
                "Marie Curie studied physics in Paris",
                [
                    ("Marie Curie", "person", 0, 11),
                    ("physics", "field of study", 20, 27),
                    ("Paris", "location", 31, 36),
                ],
                None,
            ),
            (
                "The lab in New York hired Ada Lovelace",
                [("New York", "location", 11, 19), ("Ada Lovelace", "person", 26, 38)],
                None,
            ),
        ],
    ),
    "mit.txt": (
        "bio-tagfirst",
        [
            (
                "show me comedy films with jim carrey",
                [("comedy", "GENRE", 8, 14), ("jim carrey", "ACTOR", 26, 36)],
                None,
            ),
            ("five star places", [("five star", "Rating_Name", 0, 9)], None),
        ],
    ),
    "char_bio.txt": (
        "char-bio",
        [
            ("我在北京见到王芳", [("北京", "LOC", 2, 4), ("王芳", "PER", 6, 8)], None),
            ("新华社报道", [("新华社", "ORG", 0, 3)], None),
        ],
    ),
    "weibo.conll": (
        "weibo",
        [
            ("李明去35号楼", [("李明", "PER.NAM", 0, 2)], None),
            ("他们在上海", [("他", "PER.NOM", 0, 1), ("上海", "GPE.NAM", 3, 5)], None),
        ],
    ),
    "resume.char.bmes": (
        "bmes",
        [
            (
                "张三是北京大学的教授",
                [("张三", "NAME", 0, 2), ("北京大学", "ORG", 3, 7), ("教授", "TITLE", 8, 10)],
                None,
            ),
            ("李来了", [("李", "NAME", 0, 1)], None),
        ],
    ),
    "gliner.json": (
        "gliner",
        [
            (
                "Ada Lovelace worked with Charles Babbage .",
                [("Ada Lovelace", "person", 0, 12), ("Charles Babbage", "person", 25, 40)],
                None,
            ),
            ("Nothing here .", [], None),
        ],
    ),
    "cluener.jsonl": (
        "entity-list-jsonl",
        [
            (
                "王芳在杭州阿里巴巴工作。",
                [("王芳", "name", 0, 2), ("杭州", "address", 3, 5), ("阿里巴巴", "company", 5, 9)],
                None,
            ),
            ("今天下雨。", [], None),
        ],
    ),
    "boson.jsonl": (
        "boson",
        [
            (
                "小米在北京发布了新手机。\n",
                [("小米", "公司名称", None, None), ("北京", "地点名称", None, None)],
                None,
            ),
            ("没有实体。", [], None),
        ],
    ),
    "cmeee.txt": (
        "cmeee",
        [
            ("患者出现发热和咳嗽。", [("发热", "sym", 4, 6), ("咳嗽", "sym", 7, 9)], None),
            ("给予阿莫西林治疗肺炎。", [("阿莫西林", "dru", 2, 6), ("肺炎", "dis", 8, 10)], None),
        ],
    ),
    "skyner.json": (
        "skyner",
        [
            ("华为在深圳发布了新系统。", [("华为", "公司", None, None), ("深圳", "城市", None, None)], None),
            ("空的例子。", [], None),
        ],
    ),
    "pile_qa.jsonl": (
        "pile-qa",
        [
            (
                "Ada Lovelace met Charles Babbage in London.",
                [
                    ("Ada Lovelace", "person", None, None),
                    ("Charles Babbage", "person", None, None),
                    ("London", "city", None, None),
                ],
                ["person", "city", "award"],
            ),
            ("Toyota builds cars.", [("Toyota", "company", None, None)], ["company"]),
        ],
    ),
    "uniner_eval.json": (
        "uniner",
        [
            (
                "Grace Hopper joined Remington Rand .",
                [("Grace Hopper", "person", None, None), ("Remington Rand", "organization", None, None)],
                ["person", "organization", "location"],
            ),
            ("Rain is expected .", [], ["person", "organization", "location"]),
            ("Rain is expected .", [], ["person", "organization", "location"]),
        ],
    ),
    "uniner_train.json": (
        "uniner",
        [
            (
                "Linus Torvalds wrote Linux in Helsinki.",
                [
                    ("Linus Torvalds", "person", None, None),
                    ("Linux", "software", None, None),
                    ("Helsinki", "city", None, None),
                ],
                ["person", "software", "city", "award"],
            ),
            (
                "鲁迅写了《狂人日记》。",
                [("鲁迅", "人名", None, None), ("狂人日记", "书名", None, None)],
                ["人名", "书名"],
            ),
        ],
    ),
    "conll2003.txt": (
        "conll",
        [
            ("EU rejects German call", [("EU", "ORG", 0, 2), ("German", "MISC", 11, 17)], None),
            ("Peter Blackburn", [("Peter Blackburn", "PER", 0, 15)], None),
            ("BRUSSELS 1996-08-22", [("BRUSSELS", "LOC", 0, 8)], None),
        ],
    ),
    "bio_space.txt": (
        "bio",
        [
            (
                "Ada Lovelace was born in London",
                [("Ada Lovelace", "person", 0, 12), ("London", "location", 25, 31)],
                None,
            ),
            ("Nothing here", [], None),
        ],
    ),
    "tokens_tags.jsonl": (
        "tokens-tags",
        [
            (
                "{@Atom Araullo@} visits Manila",
                [("{@Atom Araullo@}", "person", 0, 16), ("Manila", "location", 24, 30)],
                None,
            ),
            ("no entity", [], None),
        ],
    ),
    "brat": (
        "brat",
        [
            (
                "Marie Curie was born in Warsaw.\n",
                [("Marie Curie", "Person", 0, 11), ("Warsaw", "Location", 24, 30)],
                None,
            ),
            ("Paris is big.\n", [("Paris", "Location", 0, 5)], None),
        ],
    ),
    "rait.jsonl": (
        "rait",
        [
            (
                "Serena Williams won in Melbourne.",
                [("Serena Williams", "person", 0, 15), ("Melbourne", "city", 23, 32)],
                ["person", "city", "date"],
            ),
            ("No spans here.", [("spans", "thing", None, None)], None),
        ],
    ),
}


def _summary(records: list[Record]) -> list[tuple]:
    return [(r.text, [(m.text, m.type, m.start, m.end) for m in r.mentions], r.types) for r in records]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_loads_exactly(name: str) -> None:
    fmt, expected = EXPECTED[name]
    assert detect_format(FIX / name) == fmt
    auto = load_records(FIX / name)
    assert _summary(auto) == expected
    assert _summary(load_records(FIX / name, fmt)) == expected
    assert len({r.id for r in auto}) == len(auto)
    for record in auto:
        for m in record.mentions:
            if m.start is not None:
                assert record.text[m.start : m.end] == m.text


def test_every_format_has_a_fixture() -> None:
    assert {fmt for fmt, _ in EXPECTED.values()} == set(LOAD_FORMATS)


def test_source_ids_are_kept() -> None:
    assert [r.id for r in load_records(FIX / "boson.jsonl")] == ["7", "8"]
    assert [r.id for r in load_records(FIX / "pile_qa.jsonl")] == ["12", "13"]
    assert [r.id for r in load_records(FIX / "uniner_eval.json")] == ["ev_0", "ev_3", "ev_6"]


def test_quirks_are_repaired_and_reported() -> None:
    stats = LoadStats()
    load_records(FIX / "bio.txt", stats=stats)  # "New" is tagged I-location after O
    assert len(stats.repaired) == 1 and "line 11" in stats.repaired[0] and "I-location" in stats.repaired[0]
    stats = LoadStats()
    load_records(FIX / "cmeee.txt", stats=stats)  # "9    8    dis" is an empty inverted span
    assert len(stats.repaired) == 1 and "line 2" in stats.repaired[0] and "9    8    dis" in stats.repaired[0]
    assert (stats.records, stats.mentions, stats.skipped) == (2, 4, [])


def test_stats_accumulate_across_loads() -> None:
    stats = LoadStats()
    load_records(FIX / "gliner.json", stats=stats)
    load_records(FIX / "cluener.jsonl", stats=stats)
    assert (stats.records, stats.mentions) == (4, 5)


# ------------------------------------------------------------------------------------------ bad input

BAD = [
    # (file name, content, format, expected line or None, words in the message)
    (
        "bad.jsonl",
        '{"text": "ab", "entity_list": []}\n{"text": "ab", \n',
        "entity-list-jsonl",
        2,
        "invalid JSON",
    ),
    (
        "bad.jsonl",
        json.dumps(
            {
                "text": "王芳来了",
                "entity_list": [
                    {"entity_index": {"begin": 0, "end": 3}, "entity_type": "name", "entity": "王芳"}
                ],
            }
        )
        + "\n",
        "entity-list-jsonl",
        1,
        "not '王芳'",
    ),
    (
        "bad.jsonl",
        json.dumps(
            {
                "text": "abc",
                "entity_list": [{"entity_index": {"begin": 2, "end": 9}, "entity_type": "x", "entity": "c"}],
            }
        )
        + "\n",
        "entity-list-jsonl",
        1,
        "outside the text",
    ),
    ("bad.jsonl", '{"sentence": "ab"}\n', "entity-list-jsonl", 1, "field 'text': missing"),
    ("bad.txt", "a\tO\nb\tB-x\tEXTRA\n", "bio", 2, "expected 'word<TAB>TAG'"),
    ("bad.txt", "a\tO\nb\tX-person\n", "bio", 2, "bad tag 'X-person'"),
    ("bad.txt", "病人发热。|||2    3    sym|||\n病人|||1    5    sym|||\n", "cmeee", 2, "outside the text"),
    ("bad.txt", "病人发热。|||2 sym|||\n", "cmeee", 1, "expected 'start end type'"),
    (
        "bad.json",
        json.dumps([{"sentence": "a b", "entities": [{"name": "b", "type": "x", "pos": [0, 1]}]}]),
        "gliner",
        None,
        "[0].entities[0]",
    ),
    (
        "bad.json",
        json.dumps([{"text": "ab", "entities": "[{'a': 'x'"}]),
        "skyner",
        None,
        "not a Python literal",
    ),
    (
        "bad.json",
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "Text: a"},
                        {"from": "gpt", "value": "I've read this text."},
                        {"from": "human", "value": "What describes x in the text?"},
                        {"from": "gpt", "value": "not json"},
                    ]
                }
            ]
        ),
        "uniner",
        None,
        "not a JSON list of strings",
    ),
    (
        "bad.json",
        json.dumps([{"conversations": [{"from": "human", "value": "Hello"}]}]),
        "uniner",
        None,
        "passage prefix",
    ),
    (
        "bad.jsonl",
        json.dumps({"id": 1, "text": "abc", "mentions": [{"text": "b", "type": "x", "start": 0, "end": 1}]})
        + "\n",
        "rait",
        1,
        "mentions[0]",
    ),
]


@pytest.mark.parametrize(("name", "content", "fmt", "line", "words"), BAD)
def test_bad_input_names_file_line_and_problem(tmp_path, name, content, fmt, line, words) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_records(path, fmt)
    assert info.value.path == str(path)
    assert info.value.line == line
    assert words in str(info.value)


@pytest.mark.parametrize(("name", "content", "fmt", "line", "words"), BAD)
def test_skip_bad_counts_the_bad_item(tmp_path, name, content, fmt, line, words) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    stats = LoadStats()
    records = load_records(path, fmt, skip_bad=True, stats=stats)
    assert len(stats.skipped) == 1 and words in stats.skipped[0]
    assert stats.records == len(records)


def test_skip_bad_keeps_the_good_items(tmp_path) -> None:
    good = (FIX / "cluener.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([good[0], "{broken", good[1], ""]), encoding="utf-8")
    stats = LoadStats()
    records = load_records(path, skip_bad=True, stats=stats)
    assert [r.text for r in records] == ["王芳在杭州阿里巴巴工作。", "今天下雨。"]
    assert len(stats.skipped) == 1 and ", line 2:" in stats.skipped[0]
    assert [r.id for r in records] == ["mixed-0", "mixed-2"]  # ids count the skipped line: they do not shift


def test_missing_and_undetectable_files(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_records(tmp_path / "nope.jsonl")
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"foo": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_records(odd)
    prose = tmp_path / "prose.txt"
    prose.write_text("Just some prose.\nNothing tagged.\n", encoding="utf-8")
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format(prose)
    with pytest.raises(ValueError, match="unknown format"):
        load_records(FIX / "bio.txt", "conll2003")


def test_jsonl_conversations_and_messages_shape_are_read(tmp_path) -> None:
    record = Record(
        "x", "Ada met Alan .", [Mention("Ada", "person"), Mention("Alan", "person")], ["person", "city"]
    )
    path = tmp_path / "conv.jsonl"
    path.write_text(json.dumps(build_conversation(record).to_messages()) + "\n", encoding="utf-8")
    assert detect_format(path) == "uniner"
    [loaded] = load_records(path)
    assert (loaded.text, loaded.types, loaded.answers("person"), loaded.answers("city")) == (
        record.text,
        ["person", "city"],
        ["Ada", "Alan"],
        [],
    )


def test_ra_it_example_turn_is_skipped(tmp_path) -> None:
    example = Record("e", "Bob lives in Rome .", [Mention("Bob", "person", 0, 3)])
    record = Record("x", "Ada met Alan .", [Mention("Ada", "person")], ["person"])
    path = tmp_path / "rag.json"
    path.write_text(
        json.dumps([build_conversation(record, examples=[example]).to_sharegpt()]), encoding="utf-8"
    )
    [loaded] = load_records(path)
    assert (loaded.text, loaded.answers("person")) == ("Ada met Alan .", ["Ada"])


# -------------------------------------------------------------------------------------------- writers


@pytest.mark.parametrize(
    ("source", "fmt"),
    [
        ("bio.txt", "bio"),
        ("gliner.json", "bio"),
        ("cluener.jsonl", "entity-list-jsonl"),
        ("rait.jsonl", "rait"),
        ("pile_qa.jsonl", "rait"),
    ],
)
def test_write_then_load_round_trips(tmp_path, source: str, fmt: str) -> None:
    records = load_records(FIX / source)
    out = tmp_path / f"out.{'txt' if fmt == 'bio' else 'jsonl'}"
    write_records(records, out, fmt)
    again = load_records(out, fmt)
    if fmt == "rait":
        assert [r.to_dict() for r in again] == [r.to_dict() for r in records]
    else:
        assert [(r.text, r.mentions) for r in again] == [(r.text, r.mentions) for r in records]


def test_uniner_and_messages_writers(tmp_path) -> None:
    records = load_records(FIX / "rait.jsonl") + load_records(FIX / "skyner.json")
    write_records(records, tmp_path / "out.json", "uniner")
    data = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert data[0]["conversations"][0] == {
        "from": "human",
        "value": "Text: Serena Williams won in Melbourne.",
    }
    assert data[0]["conversations"][-2:] == [
        {"from": "human", "value": "What describes date in the text?"},
        {"from": "gpt", "value": "[]"},
    ]
    assert (
        data[2]["conversations"][0]["value"] == "文本： 华为在深圳发布了新系统。"
    )  # language detected per record
    again = load_records(tmp_path / "out.json")
    assert [(r.text, r.query_types(), [m.text for m in r.mentions]) for r in again] == [
        (r.text, r.query_types(), [m.text for m in r.mentions]) for r in records
    ]
    write_records(records, tmp_path / "out.jsonl", "messages", lang="en")
    first = Conversation.from_dict(
        json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()[2])
    )
    assert first.turns[0].content == "Text: 华为在深圳发布了新系统。"


def test_writers_refuse_what_the_format_cannot_hold(tmp_path) -> None:
    spanless = Record("a", "Ada met Alan", [Mention("Ada", "person")])
    with pytest.raises(DataError, match="has no span"):
        write_records([spanless], tmp_path / "x.jsonl", "entity-list-jsonl")
    inside_token = Record("b", "Ada met Alan", [Mention("Al", "person", 8, 10)])
    with pytest.raises(DataError, match="token boundaries"):
        write_records([inside_token], tmp_path / "x.txt", "bio")
    with pytest.raises(ValueError, match="unknown output format"):
        write_records([spanless], tmp_path / "x.txt", "gliner")
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "x.jsonl").exists()


def test_detect_lang() -> None:
    assert detect_lang("华为在深圳发布了新系统。") == "zh"
    assert detect_lang("Python和Java是常用的编程语言。") == "zh"
    assert detect_lang("Serena Williams won in Melbourne (墨尔本).") == "en"


# --------------------------------------------------------------------------------------- Hub and CLI


def test_hub_loader_reads_a_local_file_through_datasets(tmp_path) -> None:
    stats = LoadStats()
    records = load_pile_ner_hub(str(FIX / "uniner_train.json"), cache_dir=tmp_path / "cache", stats=stats)
    assert [r.to_dict() for r in records] == [r.to_dict() for r in load_records(FIX / "uniner_train.json")]
    assert (stats.records, stats.mentions) == (2, 5)


def test_convert_library_and_cli(tmp_path) -> None:
    stats = convert(FIX / "mit.txt", tmp_path / "mit.jsonl")
    assert (stats.records, stats.mentions) == (2, 3)
    assert [r.text for r in load_records(tmp_path / "mit.jsonl", "rait")][1] == "five star places"
    runner = CliRunner()
    result = runner.invoke(
        app, ["convert", str(FIX / "char_bio.txt"), str(tmp_path / "pd.json"), "--to", "uniner"]
    )
    assert result.exit_code == 0, result.output
    assert "2 records, 3 mentions" in result.output
    assert json.loads((tmp_path / "pd.json").read_text(encoding="utf-8"))[0]["conversations"][0]["value"] == (
        "文本： 我在北京见到王芳"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text((FIX / "cluener.jsonl").read_text(encoding="utf-8") + "{oops\n", encoding="utf-8")
    result = runner.invoke(app, ["convert", str(bad), str(tmp_path / "o.jsonl"), "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "1 skipped" in result.output and "line 3" in result.output
    result = runner.invoke(app, ["convert", str(bad), str(tmp_path / "o2.jsonl")])
    assert isinstance(result.exception, DataError) and not (tmp_path / "o2.jsonl").exists()
    result = runner.invoke(
        app, ["convert", str(FIX / "bio.txt"), str(tmp_path / "o3.json"), "--to", "gliner"]
    )
    assert isinstance(result.exception, RaitError) and "choose one of rait, uniner" in str(result.exception)


# ------------------------------------------------------------------------------- layouts and odd files


def test_docstart_lines_separate_documents_and_are_never_tokens(tmp_path) -> None:
    path = tmp_path / "harvey.txt"
    path.write_text(
        "-DOCSTART-\tO\n\nHouston\tB-point\nfloods\tO\n-DOCSTART-\tO\nRain\tO\n", encoding="utf-8"
    )
    records = load_records(path)
    assert [r.text for r in records] == ["Houston floods", "Rain"]
    assert [(m.text, m.start) for m in records[0].mentions] == [("Houston", 0)]


def test_conll_columns_option_picks_token_and_tag(tmp_path) -> None:
    path = tmp_path / "cols.txt"
    path.write_text("B-PER x Ada\nO x met\n", encoding="utf-8")
    [record] = load_records(path, "conll", columns=(2, 0))
    assert (record.text, [(m.text, m.type) for m in record.mentions]) == ("Ada met", [("Ada", "PER")])


def test_tokens_tags_with_integer_tags_need_the_label_list(tmp_path) -> None:
    path = tmp_path / "hf.json"
    path.write_text(json.dumps([{"tokens": ["Ada", "met", "Bo"], "ner_tags": [1, 0, 1]}]), encoding="utf-8")
    with pytest.raises(DataError, match="label list"):
        load_records(path)
    [record] = load_records(path, tag_names=["O", "B-PER", "I-PER"])
    assert [(m.text, m.type) for m in record.mentions] == [("Ada", "PER"), ("Bo", "PER")]


def test_brat_discontinuous_mention_is_reported() -> None:
    stats = LoadStats()
    load_records(FIX / "brat" / "doc2.ann", stats=stats)
    assert (
        len(stats.repaired) == 1 and "discontinuous" in stats.repaired[0] and "doc2.ann" in stats.repaired[0]
    )


def test_bom_is_accepted(tmp_path) -> None:
    for name in ("bio.txt", "cluener.jsonl", "gliner.json"):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + (FIX / name).read_bytes())
        assert _summary(load_records(path)) == EXPECTED[name][1]


def test_tag_with_trailing_whitespace_is_stripped_and_reported(tmp_path) -> None:
    path = tmp_path / "ws.txt"
    path.write_text("Ada\tB-PER \nmet\tO\nBo\tB-PER\n", encoding="utf-8")
    stats = LoadStats()
    [record] = load_records(path, "bio", stats=stats)
    assert {m.type for m in record.mentions} == {"PER"}
    assert len(stats.repaired) == 1 and "line 1" in stats.repaired[0] and "whitespace" in stats.repaired[0]


def test_file_cut_inside_a_tag_is_refused(tmp_path) -> None:
    path = tmp_path / "cut.txt"
    path.write_text("Ada\tB-PER\nin\tO\nLondon\tB-LOC\n\nParis\tB-LO", encoding="utf-8")
    with pytest.raises(DataError, match="truncated") as info:
        load_records(path)
    assert info.value.line == 5
    path.write_text(
        "Ada\tB-PER\nin\tO\nLondon\tB-LOC\n\nParis\tB-LOC", encoding="utf-8"
    )  # no newline, known type
    assert len(load_records(path)) == 2


def test_bmes_entity_left_open_is_reported(tmp_path) -> None:
    path = tmp_path / "open.char.bmes"
    path.write_text("张 B-NAME\n三 M-NAME\n来 O\n\n李 S-NAME\n", encoding="utf-8")
    stats = LoadStats()
    records = load_records(path, stats=stats)
    assert [m.text for m in records[0].mentions] == ["张三"]
    assert len(stats.repaired) == 1 and "line 1" in stats.repaired[0] and "no E- tag" in stats.repaired[0]
    stats = LoadStats()
    load_records(FIX / "bio.txt", stats=stats)  # BIO files have no E- tags: B- then O is normal
    assert not any("E- tag" in message for message in stats.repaired)


@pytest.mark.parametrize("fmt", [None, "bio", "rait", "cmeee"])
def test_empty_file_says_it_is_empty(tmp_path, fmt) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_records(path, fmt)


def test_directory_and_non_utf8_files(tmp_path) -> None:
    with pytest.raises(DataError, match="is a directory"):
        load_records(tmp_path)
    path = tmp_path / "latin1.txt"
    path.write_bytes("Ada\tB-PER\n\nJos\xe9\tB-PER\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8") as info:
        load_records(path, "bio")
    assert info.value.line == 3


def test_swapped_columns_are_named(tmp_path) -> None:
    with pytest.raises(DataError, match="columns look swapped"):
        load_records(FIX / "bio.txt", "bio-tagfirst")
    with pytest.raises(DataError, match="columns look swapped"):
        load_records(FIX / "mit.txt", "bio")


def test_tokens_with_spaces_survive_convert_to_bio(tmp_path) -> None:
    convert(FIX / "tokens_tags.jsonl", tmp_path / "t.txt", to_fmt="bio")
    again = load_records(tmp_path / "t.txt", "bio")
    original = load_records(FIX / "tokens_tags.jsonl")
    assert [(r.text, r.mentions, r.tokens) for r in again] == [
        (r.text, r.mentions, r.tokens) for r in original
    ]
    convert(tmp_path / "t.txt", tmp_path / "t.jsonl")  # and through the rait format
    assert [r.tokens for r in load_records(tmp_path / "t.jsonl")] == [r.tokens for r in original]
