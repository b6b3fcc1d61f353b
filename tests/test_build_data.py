"""rait build-data: vanilla / RA-IT conversation files, determinism, subsampling, fallback, manifest, CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rait.build_data import BuildConfig, build_data, manifest_path
from rait.cli import app
from rait.data.benchmarks import sample_path
from rait.data.formats import write_records
from rait.data.sources import load_source, subsample
from rait.errors import DataError, RaitError
from rait.records import Conversation, Mention, Record

TOPICS = [
    ("Alice Smith joined Acme Corp in Paris", [("Alice Smith", "person"), ("Acme Corp", "company")]),
    ("Bob Jones joined Acme Corp in Berlin", [("Bob Jones", "person"), ("Berlin", "city")]),
    ("The Nile flows through Egypt and Sudan", [("Nile", "river"), ("Egypt", "country")]),
    ("The Danube flows through Austria and Hungary", [("Danube", "river"), ("Austria", "country")]),
    ("Aspirin treats headache and fever", [("Aspirin", "drug"), ("headache", "symptom")]),
    ("Ibuprofen treats fever and pain", [("Ibuprofen", "drug"), ("fever", "symptom")]),
    ("Mozart composed the Requiem in Vienna", [("Mozart", "composer"), ("Vienna", "city")]),
    ("Bach composed the Mass in Leipzig", [("Bach", "composer"), ("Leipzig", "city")]),
    ("Python and Rust are programming languages", [("Python", "language"), ("Rust", "language")]),
    ("Java and Go are programming languages", [("Java", "language"), ("Go", "language")]),
    ("A rare comet was seen over Chile", [("comet", "rare type")]),
    ("Carol Lee joined Initech in Paris", [("Carol Lee", "person"), ("Initech", "company")]),
]


def make_records() -> list[Record]:
    records = []
    for i, (text, mentions) in enumerate(TOPICS):
        spans = [Mention(m, t, text.index(m), text.index(m) + len(m)) for m, t in mentions]
        records.append(Record(id=f"doc-{i}", text=text, mentions=spans, source="fixture"))
    return records


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "source.jsonl"
    write_records(make_records(), path, "rait")
    return path


def config(source: Path, output: Path, **options) -> BuildConfig:
    options = {
        "embedder": "hashing",
        "cache_dir": str(output.parent / "cache"),
        "show_progress": False,
    } | options
    return BuildConfig(source=str(source), output=output, **options)


def read_conversations(path: Path) -> list[Conversation]:
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        rows = json.loads(path.read_text(encoding="utf-8"))
    return [Conversation.from_dict(row) for row in rows]


def test_ra_it_conversations(source, tmp_path):
    out = tmp_path / "out" / "train.json"
    manifest = build_data(config(source, out))
    conversations = read_conversations(out)
    assert [c.id for c in conversations] == [f"doc-{i}" for i in range(12)]
    first = conversations[0].turns
    assert first[0].content.startswith("Here are some examples of named entity recognition:\nText: ")
    carol = (
        "Text: Carol Lee joined Initech in Paris\nEntity: [{'Carol Lee': 'person'}, {'Initech': 'company'}]"
    )
    assert carol in first[0].content
    assert "Text: Bob Jones joined Acme Corp in Berlin\n" in first[0].content
    assert "Alice Smith" not in first[0].content  # never itself
    assert first[0].content.count("\nText: ") == 2  # k = 2
    assert [t.content for t in first[1:4]] == [
        "I've read these examples.",
        "Text: Alice Smith joined Acme Corp in Paris",
        "I've read this text.",
    ]
    questions = [t.content for t in first[4::2]]
    present = {"What describes person in the text?", "What describes company in the text?"}
    assert present <= set(questions) and 2 <= len(questions) <= 4  # present types + 0-2 negatives
    assert manifest["counts"] == {
        "source_records": 12,
        "samples": 12,
        "conversations": 12,
        "questions": sum((len(c.turns) - 4) // 2 for c in conversations),
        "empty_answers": sum(t.content == "[]" for c in conversations for t in c.turns),
        "examples_per_sample": {"2": 12},
        "fallback_vanilla": 0,
    }
    assert manifest["embedder"] == {"name": "hashing-256", "embedded": 12, "from_cache": 0}
    assert manifest["lang"] == "en" and manifest["options"]["strategy"] == "nn"
    assert json.loads(manifest_path(out).read_text()) == manifest
    assert set(manifest["timings_s"]) >= {"load", "embed", "knn", "bm25", "total"}


def test_same_inputs_and_seed_give_byte_identical_files(source, tmp_path):
    outputs = []
    for run in range(2):
        out = tmp_path / f"run{run}" / "train.json"
        opts = {"strategy": "dnn", "K": 4, "cache_dir": str(tmp_path / "cache")}
        outputs.append((out, build_data(config(source, out, **opts))))
    (a, manifest_a), (b, manifest_b) = outputs
    assert a.read_bytes() == b.read_bytes()
    assert manifest_b["embedder"]["embedded"] == 0 and manifest_b["embedder"]["from_cache"] == 12
    assert manifest_a["output"]["sha256"] == manifest_b["output"]["sha256"]
    volatile = ("timings_s", "output", "embedder")
    assert {k: v for k, v in manifest_a.items() if k not in volatile} == {
        k: v for k, v in manifest_b.items() if k not in volatile
    }
    other = tmp_path / "seed7" / "train.json"
    build_data(config(source, other, strategy="dnn", K=4, seed=7))
    assert other.read_bytes() != a.read_bytes()


def test_vanilla(source, tmp_path):
    out = tmp_path / "vanilla.jsonl"
    manifest = build_data(config(source, out, method="vanilla", format="messages", negative_prob=0.0))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {
        "id": "doc-0",
        "messages": [
            {"role": "user", "content": "Text: Alice Smith joined Acme Corp in Paris"},
            {"role": "assistant", "content": "I've read this text."},
            {"role": "user", "content": "What describes person in the text?"},
            {"role": "assistant", "content": '["Alice Smith"]'},
            {"role": "user", "content": "What describes company in the text?"},
            {"role": "assistant", "content": '["Acme Corp"]'},
        ],
    }
    assert manifest["embedder"] is None and "fallback_vanilla" not in manifest["counts"]


def test_samples_without_examples_fall_back_to_vanilla(source, tmp_path):
    build_data(config(source, tmp_path / "v.json", method="vanilla"))
    manifest = build_data(config(source, tmp_path / "f.json", strategy="nn_bm25", bm25_threshold=1e9))
    assert manifest["counts"]["fallback_vanilla"] == 12
    assert manifest["counts"]["examples_per_sample"] == {"0": 12}
    assert (tmp_path / "f.json").read_bytes() == (tmp_path / "v.json").read_bytes()
    partial = build_data(config(source, tmp_path / "p.json", strategy="nn_bm25", bm25_threshold=1.0))
    assert 0 < partial["counts"]["fallback_vanilla"] < 12


def test_size_subsamples_the_source_and_the_pool(source, tmp_path):
    out = tmp_path / "small.json"
    manifest = build_data(config(source, out, size=5, negative_prob=1.0))
    conversations = read_conversations(out)
    kept = {c.id for c in conversations}
    assert len(kept) == 5 and manifest["counts"]["samples"] == 5
    texts = {r.id: r.text for r in make_records()}
    pool_texts = {texts[i] for i in kept}
    for conversation in conversations:
        shown = [line[len("Text: ") :] for line in conversation.turns[0].content.splitlines()[1::2]]
        assert len(shown) == 2 and set(shown) <= pool_texts
    # negatives come from the whole source, not only from the sampled passages' types
    kept_types = {m.type for r in make_records() if r.id in kept for m in r.mentions}
    asked = {
        t.content[len("What describes ") : -len(" in the text?")] for c in conversations for t in c.turns
    }
    asked = {t for t in asked if t in {m for _, ms in TOPICS for _, m in ms}}
    assert asked - kept_types
    smaller = {r.id for r in subsample(make_records(), 3, seed=42)}
    assert smaller < kept
    with pytest.raises(RaitError, match="larger than the source"):
        build_data(config(source, out, size=13))


def test_bad_inputs(source, tmp_path):
    records = make_records()
    records[3].id = "doc-0"
    duplicated = tmp_path / "dup.jsonl"
    write_records(records, duplicated, "rait")
    with pytest.raises(DataError, match="duplicate record id 'doc-0'"):
        build_data(config(duplicated, tmp_path / "x.json"))
    with pytest.raises(RaitError, match="not a file, nor a registered name"):
        build_data(config(tmp_path / "nope.jsonl", tmp_path / "x.json"))
    with pytest.raises(RaitError, match="unknown retrieval strategy"):
        build_data(config(source, tmp_path / "x.json", strategy="bm25"))
    with pytest.raises(RaitError, match="unknown method"):
        build_data(config(source, tmp_path / "x.json", method="rag"))


def test_cli(source, tmp_path):
    out = tmp_path / "cli" / "train.json"
    result = CliRunner().invoke(
        app, ["build-data", str(source), "-o", str(out), "-k", "1", "--embedder", "hashing", "-q",
              "--cache-dir", str(tmp_path / "cache"), "--strategy", "mixed_nn", "--mixed-ratio", "0.5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 12 conversations" in result.output
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["options"]["k"] == 1 and manifest["options"]["strategy"] == "mixed_nn"
    assert manifest["counts"]["examples_per_sample"] == {"1": 12}


def test_chinese_end_to_end(tmp_path):
    """Chinese sample data: language detected, USE embeddings, jieba BM25 filter, Chinese template."""
    out = tmp_path / "zh.json"
    opts = {"embedder": None, "strategy": "nn_bm25", "bm25_threshold": 1.0}
    manifest = build_data(config(sample_path("zh", "train"), out, **opts))
    assert manifest["lang"] == "zh" and manifest["embedder"]["name"] == "use-multilingual"
    conversations = read_conversations(out)
    with_examples = [
        c for c in conversations if c.turns[0].content.startswith("以下是一些命名实体识别的例子：")
    ]
    assert with_examples and manifest["counts"]["fallback_vanilla"] == len(conversations) - len(with_examples)
    assert all(c.turns[1].content == "我已读完这些例子。" for c in with_examples)
    assert all(c.turns[2].content.startswith("文本：") for c in with_examples)


@pytest.mark.real_data
def test_registered_source(shared_data, tmp_path):
    records, lang = load_source("pile_ner_subset")
    assert len(records) == 2217 and lang == "en"
    out = tmp_path / "pile.json"
    manifest = build_data(config(Path("pile_ner_subset"), out, method="vanilla", size=20))
    assert manifest["counts"] == {"source_records": 2217, "samples": 20, "conversations": 20,
                                  "questions": manifest["counts"]["questions"],
                                  "empty_answers": manifest["counts"]["empty_answers"]}  # fmt: skip
    assert manifest["counts"]["questions"] >= 40


def test_a_conversation_source_keeps_its_own_questions(tmp_path):
    """Pile-NER as released: the source's types, order and negatives are asked as they are."""
    turns = [
        ("human", "Text: Ada met Alan in London"),
        ("gpt", "I've read this text."),
        ("human", "What describes city in the text?"),
        ("gpt", '["London"]'),
        ("human", "What describes award in the text?"),
        ("gpt", "[]"),
        ("human", "What describes person in the text?"),
        ("gpt", '["Ada", "Alan"]'),
    ]
    source = tmp_path / "pile.json"
    row = {"id": "c0", "conversations": [{"from": f, "value": v} for f, v in turns]}
    source.write_text(json.dumps([row]), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    build_data(config(source, out, method="vanilla"))
    assert json.loads(out.read_text(encoding="utf-8")) == row


def _questions(conversation: Conversation) -> dict[str, str]:
    """Asked type -> answer of a vanilla conversation."""
    turns = conversation.turns[2:]
    return {
        q.content.removeprefix("What describes ").removesuffix(" in the text?"): a.content
        for q, a in zip(turns[::2], turns[1::2], strict=True)
    }


def test_negative_recipe_asks_a_fixed_number_of_distinct_absent_types(source, tmp_path):
    out = tmp_path / "neg.jsonl"
    manifest = build_data(config(source, out, method="vanilla", negatives=3))
    records = {r.id: r for r in make_records()}
    for conversation in read_conversations(out):
        asked = _questions(conversation)
        present = {m.type for m in records[conversation.id].mentions}
        assert present <= set(asked) and len(asked) == len(present) + 3
        assert all(asked[t] == "[]" for t in set(asked) - present)
    assert manifest["options"]["negatives"] == 3
    assert manifest["counts"]["empty_answers"] == 3 * 12
    again = tmp_path / "again.jsonl"
    build_data(config(source, again, method="vanilla", negatives=3))
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.jsonl"
    build_data(config(source, other, method="vanilla", negatives=3, seed=7))
    assert other.read_bytes() != out.read_bytes()


def test_negative_ratio_rounds_per_passage_and_hard_negatives_build(source, tmp_path):
    out = tmp_path / "ratio.jsonl"
    build_data(config(source, out, method="vanilla", negative_ratio=1.5, negative_sampling="mixed"))
    records = {r.id: r for r in make_records()}
    for conversation in read_conversations(out):
        present = {m.type for m in records[conversation.id].mentions}
        extra = len(_questions(conversation)) - len(present)
        assert int(1.5 * len(present)) <= extra <= int(1.5 * len(present)) + 1
    hard = tmp_path / "hard.jsonl"
    manifest = build_data(config(source, hard, method="ra-it", negatives=2, negative_sampling="hard"))
    assert manifest["counts"]["empty_answers"] == 2 * 12


def test_hard_negatives_come_from_the_nearest_absent_types():
    import numpy as np

    from rait.negatives import NegativeRecipe

    counts = Counter({"person": 5, "people": 1, "human": 1, "river": 50, "city": 50, "drug": 50})
    types = sorted(counts)  # city, drug, human, people, person, river
    near = {"person": [1.0, 0.0], "people": [0.99, 0.14], "human": [0.95, 0.31]}
    vectors = np.array([near.get(t, [0.0, 1.0]) for t in types], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    record = Record("r1", "Ann met Bo.", [Mention("Ann", "person")])
    hard = NegativeRecipe(counts, count=2, sampling="hard", type_vectors=vectors, hard_pool=2)
    assert set(hard.question_types(record)) == {"person", "people", "human"}
    frequency = NegativeRecipe(counts, count=3, sampling="frequency")
    drawn = Counter(
        t
        for i in range(200)
        for t in frequency.question_types(Record(f"r{i}", "x", [Mention("x", "person")]))
    )
    assert drawn["person"] == 200 and drawn["river"] > drawn["human"] * 5  # weighted by frequency
    with pytest.raises(ValueError, match="one vector per type"):
        NegativeRecipe(counts, count=1, sampling="hard")
    lone = Record("r2", "Nothing here.", [])
    assert len(hard.question_types(lone)) == 2  # no present type: by frequency


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"negatives": 2, "negative_ratio": 1.0}, "not both"),
        ({"negative_sampling": "hard"}, "needs negatives or negative_ratio"),
        ({"negatives": 2, "negative_sampling": "closest"}, "unknown negative_sampling"),
        ({"negatives": 2, "negative_prob": 0.2}, "leave it out"),
        ({"negatives": -1}, "must be >= 0"),
    ],
)
def test_bad_negative_options(source, tmp_path, options, match):
    with pytest.raises(RaitError, match=match):
        build_data(config(source, tmp_path / "x.json", method="vanilla", **options))


def test_cli_negatives(source, tmp_path):
    out = tmp_path / "neg.json"
    result = CliRunner().invoke(
        app, ["build-data", str(source), "-o", str(out), "--method", "vanilla", "-q", "--negatives", "4",
              "--negative-sampling", "mixed", "--embedder", "hashing", "--cache-dir", str(tmp_path / "c")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(manifest_path(out).read_text())["counts"]["empty_answers"] == 4 * 12
