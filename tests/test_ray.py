"""Corpus-scale extraction on Ray Data (rait.corpus.ray) on a local Ray with 2 CPUs and the tiny model:
``rait predict --engine ray`` writes, shard by shard, exactly the rows of a single-process ``rait predict``,
resumes by shard, reads jsonl and parquet passages; extract_dataset adds entities to a ray Dataset."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from rait.api import NER  # noqa: E402
from rait.cli import app  # noqa: E402
from rait.corpus.ray import extract_dataset, run_predict_ray, shard_files  # noqa: E402
from rait.errors import RaitError  # noqa: E402
from rait.inference import PredictConfig  # noqa: E402
from rait.models import resolve_model_path  # noqa: E402
from rait.testing import save_tiny_model  # noqa: E402

PASSAGES = [
    "Barack Obama was born in Honolulu, Hawaii.",
    "Apple Inc. released the iPhone in San Francisco.",
    "Marie Curie studied at the University of Paris.",
    "北京是中华人民共和国的首都。",
    "Steven Spielberg directed Jurassic Park.",
]
TYPES = ["person", "location"]
# two types per passage and two questions per batch: every passage is decoded alone, so the answers cannot
# depend on which passages share a shard
OPTIONS = [
    "--types",
    ",".join(TYPES),
    "--max-new-tokens",
    "6",
    "--batch-size",
    "2",
    "--decoding",
    "constrained",
]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray")
    save_tiny_model(root / "tiny")
    rows = [{"id": f"p{i}", "text": text} for i, text in enumerate(PASSAGES)]
    (root / "passages.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8"
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "parquet").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), root / "parquet" / "passages.parquet")
    return root


def predict(*args) -> str:
    result = CliRunner().invoke(app, ["predict", *map(str, args), "-q"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def lines(paths) -> list[str]:
    return [line for path in paths for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_ray_output_equals_single_process_row_for_row_and_resumes_by_shard(corpus, local_ray):
    model = corpus / "tiny"
    predict("-m", model, "-i", corpus / "passages.jsonl", "-o", corpus / "single.jsonl", *OPTIONS)
    single = lines([corpus / "single.jsonl"])
    assert len(single) == len(PASSAGES) * len(TYPES)
    shards = corpus / "shards"
    ray_options = ["--engine", "ray", "--num-workers", "2", "--shard-size", "2"]
    out = predict("-m", model, "-i", corpus / "passages.jsonl", "-o", shards, *OPTIONS, *ray_options)
    assert [p.name for p in shard_files(shards)] == [
        "part-00000.jsonl",
        "part-00001.jsonl",
        "part-00002.jsonl",
    ]
    assert lines(shard_files(shards)) == single
    assert "3 shards of at most 2 passages, 0 already done" in out and "5 passages predicted" in out
    kept = shard_files(shards)[0].stat().st_mtime_ns
    shard_files(shards)[1].unlink()
    out = predict("-m", model, "-i", corpus / "passages.jsonl", "-o", shards, *OPTIONS, *ray_options)
    assert "3 shards of at most 2 passages, 2 already done" in out and "2 passages predicted" in out
    assert lines(shard_files(shards)) == single and shard_files(shards)[0].stat().st_mtime_ns == kept


def test_parquet_passages_give_the_rows_of_the_same_jsonl(corpus):
    """Both engines read input files with the same loader; the benchmark is named after the file stem."""
    model, parquet = corpus / "tiny", corpus / "parquet" / "passages.parquet"
    predict("-m", model, "-i", corpus / "passages.jsonl", "-o", corpus / "jsonl.jsonl", *OPTIONS)
    predict("-m", model, "-i", parquet, "-o", corpus / "parquet.jsonl", *OPTIONS)
    assert lines([corpus / "parquet.jsonl"]) == lines([corpus / "jsonl.jsonl"])


def test_shards_with_retrieved_examples_equal_single_process_too(corpus, local_ray):
    """Each actor builds the example pool once and retrieves per passage, as the single process does."""
    pool = corpus / "pool.jsonl"
    rows = [
        {"id": "e1", "text": "Obama visited Paris.", "mentions": [{"text": "Obama", "type": "person"}]},
        {"id": "e2", "text": "马云在杭州。", "mentions": [{"text": "杭州", "type": "location"}]},
    ]
    pool.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    examples = ["--examples", "in-domain", "--pool", pool, "-k", "1", "--embedder", "hashing"]
    model, passages = corpus / "tiny", corpus / "passages.jsonl"
    out = predict("-m", model, "-i", passages, "-o", corpus / "ex.jsonl", *OPTIONS, *examples)
    assert "5 had examples" in out
    ray_options = ["--engine", "ray", "--num-workers", "2", "--shard-size", "3"]
    out = predict("-m", model, "-i", passages, "-o", corpus / "ex_shards", *OPTIONS, *examples, *ray_options)
    assert "5 had examples" in out
    assert lines(shard_files(corpus / "ex_shards")) == lines([corpus / "ex.jsonl"])


def test_extract_dataset_adds_the_entities_of_each_row(corpus, local_ray):
    options = {"decoding": "constrained", "max_new_tokens": 6, "batch_size": 2}
    dataset = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(PASSAGES)])
    rows = extract_dataset(dataset, TYPES, str(corpus / "tiny"), num_workers=2, rows_per_batch=2, **options)
    found = sorted(rows.take_all(), key=lambda row: row["id"])
    expected = NER.from_pretrained(str(corpus / "tiny"), **options).batch_predict_entities(PASSAGES, TYPES)
    assert [row["text"] for row in found] == PASSAGES
    assert [json.loads(row["entities"]) for row in found] == expected


def test_an_error_raised_in_an_actor_comes_back_as_one_rait_error(corpus, local_ray, tmp_path):
    config = PredictConfig(
        tmp_path / "out", str(corpus / "tiny"), input=corpus / "passages.jsonl", types=TYPES
    )
    fails = functools.partial(resolve_model_path, "/nonexistent/model")  # raises RaitError in the actor
    with pytest.raises(RaitError, match="^model path /nonexistent/model does not exist$"):
        run_predict_ray(config, progress=False, answerer_factory=fails)


def test_ray_options_and_a_missing_extra_are_one_clear_error(corpus, monkeypatch):
    args = ["predict", "-m", str(corpus / "tiny"), "-i", str(corpus / "passages.jsonl"), "--types", "person"]
    result = CliRunner().invoke(app, [*args, "-o", str(corpus / "x.jsonl"), "--num-workers", "2"])
    assert result.exit_code != 0 and "--num-workers applies to --engine ray only" in str(result.exception)
    result = CliRunner().invoke(app, [*args, "-o", str(corpus / "passages.jsonl"), "--engine", "ray"])
    assert "is a file; --engine ray writes a directory of shards" in str(result.exception)
    monkeypatch.setitem(sys.modules, "ray.data", None)  # as if rait[ray] were not installed
    result = CliRunner().invoke(app, [*args, "-o", str(corpus / "y"), "--engine", "ray"])
    assert str(result.exception) == "this needs ray: pip install 'rait[ray]'"
