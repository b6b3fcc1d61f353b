"""rait quickstart end to end with a tiny model (the real default model is exercised by the README run)."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

import rait.training
from rait.cli import app
from rait.data.benchmarks import sample_path
from rait.fileio import read_jsonl
from rait.quickstart import run_quickstart
from rait.records import Record
from rait.testing import save_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("model") / "tiny"))


def _test_queries(lang: str = "en") -> int:
    return sum(len(Record.from_dict(row).query_types()) for _, row in read_jsonl(sample_path(lang, "test")))


def test_quickstart_runs_every_stage_then_resumes(tmp_path, tiny_dir, monkeypatch):
    monkeypatch.setenv("RAIT_CACHE_DIR", str(tmp_path / "cache"))
    console = Console(record=True, width=200)
    kwargs = dict(
        model=tiny_dir, max_steps=2, embedder="hashing", max_new_tokens=4, console=console, progress=False
    )
    result = run_quickstart(tmp_path / "qs", **kwargs)
    assert result.skipped == []
    conversations = [json.loads(line) for line in result.data.read_text(encoding="utf-8").splitlines()]
    assert any(
        "Here are some examples" in c["conversations"][0]["value"] for c in conversations
    )  # RA-IT data
    assert (result.adapter / "adapter_config.json").is_file()
    rows = [row for _, row in read_jsonl(result.predictions)]
    assert len(rows) == _test_queries() == result.report.n_queries
    assert json.loads((tmp_path / "qs" / "metrics.json").read_text())["average"]["n_queries"] == len(rows)
    printed = console.export_text()
    assert "Average" in printed and "Extracted entities" in printed and rows[0]["text"][:20] in printed

    # interrupted after the first passage's predictions: only the missing passages are predicted again
    first_id = rows[0]["record_id"]
    kept = [json.dumps(row, ensure_ascii=False) for row in rows if row["record_id"] == first_id]
    result.predictions.write_text("\n".join(kept) + "\n", encoding="utf-8")
    monkeypatch.setattr(
        rait.training, "train", lambda config: pytest.fail("training should have been skipped")
    )
    again = run_quickstart(tmp_path / "qs", **kwargs)
    assert again.skipped == ["build", "train"]
    assert (
        again.predict_stats.n_resumed == 1
        and again.predict_stats.n_predicted == len({r["record_id"] for r in rows}) - 1
    )
    assert sum(1 for _ in read_jsonl(again.predictions)) == len(rows)
    assert run_quickstart(tmp_path / "qs", **kwargs).skipped == ["build", "train", "predict"]


def test_quickstart_cli_chinese(tmp_path, tiny_dir, monkeypatch):
    monkeypatch.setenv("RAIT_CACHE_DIR", str(tmp_path / "cache"))
    args = [
        "quickstart",
        str(tmp_path / "qs"),
        "-m",
        tiny_dir,
        "--lang",
        "zh",
        "--max-steps",
        "1",
        "--embedder",
        "hashing",
        "-q",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [row for _, row in read_jsonl(tmp_path / "qs" / "predictions.jsonl")]
    assert len(rows) == _test_queries("zh")
    data = (tmp_path / "qs" / "data" / "train.jsonl").read_text(encoding="utf-8")
    assert "以下是一些命名实体识别的例子" in data and "Average" in result.output


def test_extraction_table_shows_found_missing_and_gold(tmp_path):
    from rait.fileio import write_jsonl
    from rait.quickstart import extraction_table

    text = "Ada Lovelace wrote [notes] in London."
    rows = [
        {
            "benchmark": "b",
            "record_id": "r0",
            "type": "person",
            "gold": ["Ada Lovelace"],
            "output": '["Ada Lovelace"]',
            "text": text,
        },
        {
            "benchmark": "b",
            "record_id": "r0",
            "type": "location",
            "gold": ["London"],
            "output": '["Paris"]',
            "text": text,
        },
    ]
    write_jsonl(tmp_path / "p.jsonl", rows)
    console = Console(record=True, width=200)
    console.print(extraction_table(tmp_path / "p.jsonl"))
    printed = console.export_text()
    assert "Ada Lovelace (person)" in printed and "Paris (location) [not in text]" in printed
    assert "London (location)" in printed and "[notes]" in printed
