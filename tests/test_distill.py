"""Tests of ``rait distill``: chunking, parsing/filtering, voting, and the whole pipeline against a real
(loopback) OpenAI-compatible HTTP server that misbehaves on purpose."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import types
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from typer.testing import CliRunner

from rait.data.formats import load_records
from rait.distill import (
    Chunk,
    DistillConfig,
    LocalTeacher,
    OpenAITeacher,
    Prompt,
    TeacherSpec,
    chunk_text,
    distill,
    drop_reason,
    filter_output,
    iter_chunks,
    load_prompt,
    parse_output,
    resolve_min_agree,
    sample_chunks,
    vote,
)
from rait.distill.corpus import CorpusStats, TokenCounter, corpus_files
from rait.distill.filtering import FilterStats
from rait.errors import DataError, RaitError
from rait.testing import tiny_tokenizer

# ------------------------------------------------------------------------------------------ the server

GAZETTEER = {"Alice": "person", "Bob": "person", "Google": "organization", "Paris": "city"}
ZH_GAZETTEER = {"张三": "人物", "北京": "地点"}
# Junk every English answer carries: one item per drop reason (see expected counts below).
JUNK = [("Atlantis", "location"), ("Zeus", "x" * 60), ("person", "Person"), ("Bob", ""), ("only one",)]


def english_answer(passage: str, model: str) -> str:
    found = [(m, t) for m, t in GAZETTEER.items() if m in passage]
    if model == "m2":
        found = [(m, t) for m, t in found if m != "Paris"]
    if model == "m3":
        found = [(m, t.upper()) for m, t in found] + ([("works", "verb")] if "works" in passage else [])
    duplicate = found[:1]
    return repr(found + duplicate + JUNK)


def chinese_answer(passage: str) -> str:
    found = [{m: t} for m, t in ZH_GAZETTEER.items() if m in passage]
    return json.dumps(found + [{"上海": "地点"}], ensure_ascii=False)


class FakeServer:
    """An OpenAI chat-completions server on 127.0.0.1. Passage markers make it misbehave:
    [R429] 429 twice, [R500] 500 once, [SLOW] answers too late once, [DROP] drops the connection once,
    [BADJSON] sends a truncated body once, [DOWN] always 503, [GARBLED] always answers prose."""

    def __init__(self):
        self.hits: Counter = Counter()
        self.requests: list[dict] = []
        self.auth_fail: str | None = None
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def total(self) -> int:
        return sum(self.hits.values())

    def handle(self, handler, body: dict) -> None:
        user = body["messages"][-1]["content"]
        english = "\nPassage: " in user
        passage = user.split("\nPassage: ", 1)[1] if english else user.split("文本：", 1)[1]
        with self.lock:
            self.hits[passage] += 1
            hit = self.hits[passage]
            self.requests.append(body)
        if self.auth_fail and self.auth_fail in passage:
            return self.send(handler, 401, {"error": {"message": "bad key"}})
        if "[R429]" in passage and hit <= 2:
            return self.send(handler, 429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if "[R500]" in passage and hit == 1:
            return self.send(handler, 500, {"error": {"message": "oops"}})
        if "[DOWN]" in passage:
            return self.send(handler, 503, {"error": {"message": "down"}})
        if "[DROP]" in passage and hit == 1:
            handler.connection.shutdown(socket.SHUT_RDWR)
            return None
        if "[BADJSON]" in passage and hit == 1:
            return self.send_raw(handler, 200, b'{"id": "x", "choices": [{"mess')
        if "[SLOW]" in passage and hit == 1:
            time.sleep(2.0)
        if "[GARBLED]" in passage:
            content = "I cannot help with that."
        else:
            content = english_answer(passage, body["model"]) if english else chinese_answer(passage)
        return self.send(
            handler,
            200,
            {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            },
        )

    def send(self, handler, code: int, payload: dict, headers: dict | None = None) -> None:
        self.send_raw(handler, code, json.dumps(payload).encode(), headers)

    @staticmethod
    def send_raw(handler, code: int, data: bytes, headers: dict | None = None) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fake = FakeServer()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def write_corpus(path: Path, texts: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8"
    )
    return path


def teacher(server: FakeServer, model: str = "m1", **kwargs) -> OpenAITeacher:
    return OpenAITeacher(model, base_url=server.url, timeout=1.0, **kwargs)


def config(tmp_path: Path, corpus: Path, **kwargs) -> DistillConfig:
    defaults = dict(
        inputs=[corpus],
        output=tmp_path / "out" / "train.jsonl",
        concurrency=4,
        max_retries=2,
        backoff_base=0.01,
        backoff_max=0.05,
        show_progress=False,
    )
    return DistillConfig(**{**defaults, **kwargs})


# ------------------------------------------------------------------------------ pipeline over HTTP

MISBEHAVING = [
    "Alice works at Google in Paris.",
    "Bob visited Paris. [R429]",
    "Alice and Bob. [R500]",
    "Google is big. [SLOW]",
    "Paris is nice. [DROP]",
    "Bob likes Google. [BADJSON]",
    "Alice writes. [GARBLED]",
    "Nobody here. [DOWN]",
    "Nothing at all.",
]


def test_misbehaving_server_run_completes_with_exact_report_and_cache_prevents_repeats(
    server, tokenizer, tmp_path
):
    corpus = write_corpus(tmp_path / "corpus.jsonl", MISBEHAVING)
    cfg = config(tmp_path, corpus, filter_rules="rait")
    report = distill(cfg, teachers=[teacher(server)], tokenizer=tokenizer)

    assert server.total == 1 + 3 + 2 + 2 + 2 + 2 + 1 + 3 + 1
    assert report["chunks"] == {
        "sampled": 9,
        "written": 6,
        "no_valid_output": 1,
        "request_failed": 1,
        "no_entities": 1,
    }
    (stats,) = report["teachers"].values()
    assert stats["requests"] == {
        "cached": 0,
        "succeeded": 8,
        "sent": 17,
        "tokens": 80,
        "stopped_by_budget": 0,
        "attempt_errors": {
            "bad_response": 1,
            "connection_error": 1,
            "http_429": 2,
            "http_500": 1,
            "http_503": 3,
            "timeout": 1,
        },
        "failed": {"http_503": 1},
    }
    filtering = stats["filtering"]
    assert filtering["outputs"] == 8 and filtering["unparseable_outputs"] == 1
    # 7 parsed answers, each with 5 junk items; 6 of them repeat their first entity; 11 entities in all
    assert filtering["dropped"] == {
        "duplicate": 6,
        "empty_type": 7,
        "malformed_item": 7,
        "mention_equals_type": 7,
        "mention_not_in_passage": 7,
        "type_too_long": 7,
        "unparseable_output": 1,
    }
    assert filtering["pairs_proposed"] == 11 + 6 + 7 * 5
    assert filtering["pairs_kept"] == 11
    assert report["failures"] == [
        {"chunk": "corpus.jsonl:8:1", "teacher": stats_name(report), "reason": "http_503"}
    ]
    assert report["complete"] is False

    records = load_records(cfg.output, "rait")
    assert [r.text for r in records] == MISBEHAVING[:6]
    assert [(m.text, m.type) for m in records[0].mentions] == [
        ("Alice", "person"),
        ("Google", "organization"),
        ("Paris", "city"),
    ]
    assert json.loads(cfg.resolved_report_path().read_text())["chunks"]["written"] == 6
    first_output = cfg.output.read_bytes()

    # Re-run: only the request that failed is sent again (and fails again); the output is identical.
    before = server.total
    again = distill(cfg, teachers=[teacher(server)], tokenizer=tokenizer)
    assert server.total - before == 3
    assert server.hits["Nobody here. [DOWN]"] == 6
    assert again["teachers"][stats_name(report)]["requests"]["cached"] == 8
    assert again["teachers"][stats_name(report)]["requests"]["sent"] == 3
    assert again["teachers"][stats_name(report)]["requests"]["tokens"] == 0
    assert again["chunks"] == report["chunks"]
    assert cfg.output.read_bytes() == first_output


def stats_name(report: dict) -> str:
    (name,) = report["teachers"]
    return name


def test_crash_then_resume_repeats_no_finished_request(server, tokenizer, tmp_path):
    texts = [f"Alice met Bob on day {i}." for i in range(5)]
    corpus = write_corpus(tmp_path / "corpus.jsonl", texts)
    cfg = config(tmp_path, corpus, concurrency=1)
    server.auth_fail = "day 2"
    with pytest.raises(RaitError, match="HTTP 401"):
        distill(cfg, teachers=[teacher(server)], tokenizer=tokenizer)
    assert [server.hits[t] for t in texts] == [1, 1, 1, 0, 0]
    assert not cfg.output.exists()
    cache = cfg.resolved_cache_path()
    with cache.open("a", encoding="utf-8") as handle:  # a write torn by the kill
        handle.write('{"key": "abc", "outp')

    server.auth_fail = None
    report = distill(cfg, teachers=[teacher(server)], tokenizer=tokenizer)
    assert [server.hits[t] for t in texts] == [1, 1, 2, 1, 1]
    assert report["chunks"]["written"] == 5
    assert len(cache.read_text(encoding="utf-8").splitlines()) == 5


def test_budget_caps_requests_and_tokens_and_a_rerun_continues(server, tokenizer, tmp_path):
    texts = [f"Bob saw Paris in year {i}." for i in range(5)]
    corpus = write_corpus(tmp_path / "corpus.jsonl", texts)
    cfg = config(tmp_path, corpus, concurrency=1, max_requests=3)
    report = distill(cfg, teachers=[teacher(server)], tokenizer=tokenizer)
    assert server.total == 3
    assert report["budget"] == {
        "max_requests": 3,
        "max_tokens": None,
        "requests_sent": 3,
        "tokens_used": 30,
        "exhausted": True,
    }
    assert report["chunks"]["written"] == 3 and report["chunks"]["budget_exhausted"] == 2
    assert report["teachers"][stats_name(report)]["requests"]["stopped_by_budget"] == 2
    assert report["complete"] is False

    # 10 tokens per answer: the 4th request would start at 30 >= 25 tokens, so only 3 more are possible
    cfg = config(tmp_path, corpus, concurrency=1, max_tokens=25, cache_path=cfg.resolved_cache_path())
    report = distill(cfg, teachers=[teacher(server)], tokenizer=tokenizer)
    assert server.total == 5
    assert report["chunks"]["written"] == 5 and report["complete"] is True
    assert report["budget"]["requests_sent"] == 2 and report["budget"]["exhausted"] is False


def test_ensemble_vote_over_http(server, tokenizer, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", ["Alice works at Google in Paris."])
    teachers = [teacher(server, m) for m in ("m1", "m2", "m3")]
    cfg = config(tmp_path, corpus)
    report = distill(cfg, teachers=teachers, tokenizer=tokenizer)
    (record,) = load_records(cfg.output, "rait")
    # Paris: m1 + m3 (2 of 3); works: m3 only; m3's upper-case types agree with the others
    assert [(m.text, m.type) for m in record.mentions] == [
        ("Alice", "person"),
        ("Google", "organization"),
        ("Paris", "city"),
    ]
    assert report["ensemble"] == {
        "teachers": 3,
        "min_agree": 2,
        "pairs_before_vote": 4,
        "pairs_kept": 3,
        "dropped_disagreement": 1,
    }
    cfg = config(tmp_path, corpus, min_agree="all")
    distill(cfg, teachers=teachers, tokenizer=tokenizer)
    assert [m.text for m in load_records(cfg.output, "rait")[0].mentions] == ["Alice", "Google"]
    assert server.total == 3  # the second vote came entirely from the cache


def test_chinese_prompt_and_custom_prompt_file(server, tokenizer, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", ["张三在北京工作。"])
    cfg = config(tmp_path, corpus, lang="zh")
    report = distill(cfg, teachers=[teacher(server, lang="zh")], tokenizer=tokenizer)
    (record,) = load_records(cfg.output, "rait")
    assert [(m.text, m.type) for m in record.mentions] == [("张三", "人物"), ("北京", "地点")]
    assert report["teachers"][stats_name(report)]["filtering"]["dropped"] == {"mention_not_in_passage": 1}
    assert server.requests[0]["messages"][0] == {"role": "system", "content": "你是一个有效的信息抽取系统。"}
    assert server.requests[0]["messages"][1]["content"].endswith("\n文本：张三在北京工作。")

    prompt_file = tmp_path / "prompt.json"
    prompt_file.write_text(json.dumps({"system": "Be brief.", "user": "List entities.\nPassage: {passage}"}))
    custom = OpenAITeacher("m1", base_url=server.url, prompt=load_prompt(prompt_file), timeout=1.0)
    distill(config(tmp_path, corpus, lang="zh"), teachers=[custom], tokenizer=tokenizer)
    assert server.requests[-1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "List entities.\nPassage: 张三在北京工作。"},
    ]


def test_cli_end_to_end(server, tokenizer, tmp_path):
    from rait.cli import app

    tokenizer_file = tmp_path / "tokenizer.json"
    tokenizer.backend_tokenizer.save(str(tokenizer_file))
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    (corpus_dir / "a.txt").write_text(
        "Alice works at Google in Paris.\n\nBob likes Google.\n", encoding="utf-8"
    )
    (corpus_dir / "notes.md").write_text("ignored")
    output = tmp_path / "train.jsonl"
    args = ["distill", str(corpus_dir), "-o", str(output), "--tokenizer", str(tokenizer_file)]
    args += ["--teacher", f"openai:m1@{server.url}", "--teacher", f"openai:m2@{server.url}"]
    args += ["--text-unit", "paragraph", "--min-agree", "1", "--timeout", "1", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Wrote 2 records" in result.output
    records = load_records(output, "rait")
    assert [r.id for r in records] == ["a.txt:1:1", "a.txt:2:1"]
    assert [m.text for m in records[0].mentions] == ["Alice", "Google", "Paris"]
    report = json.loads(output.with_suffix(".report.json").read_text())
    assert report["corpus"]["ignored_files"] == [str(corpus_dir / "notes.md")]
    assert server.total == 4


# ----------------------------------------------------------------------------------- local teacher


class FakeNER:
    def __init__(self):
        self.calls: list[tuple[str, list[str]]] = []

    def predict_entities(self, text, types):
        self.calls.append((text, list(types)))
        found = [
            {"text": m, "type": t, "start": text.find(m), "end": text.find(m) + len(m)}
            for m, t in GAZETTEER.items()
            if m in text and t in types
        ]
        return found + found[:1] + [{"text": "Atlantis", "type": "city", "start": None, "end": None}]


def test_local_teacher_runs_the_pipeline_offline(tokenizer, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", ["Alice lives in Paris.", "Bob works at Google."])
    ner = FakeNER()
    local = LocalTeacher(ner, ["person", "city"], "fake-model")
    report = distill(config(tmp_path, corpus), teachers=[local], tokenizer=tokenizer)
    records = load_records(tmp_path / "out" / "train.jsonl", "rait")
    assert [[(m.text, m.type) for m in r.mentions] for r in records] == [
        [("Alice", "person"), ("Paris", "city")],
        [("Bob", "person")],
    ]
    assert ner.calls == [
        ("Alice lives in Paris.", ["person", "city"]),
        ("Bob works at Google.", ["person", "city"]),
    ]
    assert report["teachers"]["local:fake-model"]["filtering"]["dropped"] == {"mention_not_in_passage": 2}
    assert report["budget"]["requests_sent"] == 0  # the local teacher is not metered
    distill(config(tmp_path, corpus), teachers=[local], tokenizer=tokenizer)
    assert len(ner.calls) == 2  # cached


def test_local_teacher_from_pretrained_imports_rait_api_lazily(monkeypatch):
    loaded = {}

    class NER:
        @classmethod
        def from_pretrained(cls, path, lang=None):
            loaded.update(path=path, lang=lang)
            return FakeNER()

    monkeypatch.setitem(sys.modules, "rait.api", types.SimpleNamespace(NER=NER))
    local = LocalTeacher.from_pretrained("some/dir", None, "zh")
    assert loaded == {}  # nothing is loaded until the first uncached request
    assert local.annotate(local.request("张三")).output == [["Atlantis", "city"]]
    assert loaded == {"path": "some/dir", "lang": "zh"}
    assert local.types == ["人物", "组织机构", "地点", "日期", "事件", "产品"]
    assert local.name == "local:some/dir"


# ---------------------------------------------------------------------------------------- chunking

ENGLISH = (
    "The quick brown fox jumps over the lazy dog near the river bank. "
    "Alice met Bob in Paris last spring, and they talked about Google for hours. "
    "Meanwhile, a very long sentence without any useful punctuation keeps going and going and going "
    "until the reader wonders whether it will ever end at all\n"
    "New paragraph here. Short one. "
) * 4
CHINESE = "张三在北京大学读书。李四在上海工作，他喜欢龘靐齉。王五去了杭州！" * 6


@pytest.mark.parametrize("limit", [8, 16, 40])
def test_english_chunks_respect_the_token_limit_and_lose_no_text(tokenizer, limit):
    chunks = chunk_text(ENGLISH, tokenizer, limit)
    assert len(chunks) > 1
    assert all(len(tokenizer(c, add_special_tokens=False)["input_ids"]) <= limit for c in chunks)
    assert " ".join(chunks).split() == ENGLISH.split()


def test_english_chunks_end_at_sentences_when_they_fit(tokenizer):
    text = "Alice met Bob. " * 30
    chunks = chunk_text(text, tokenizer, 20)
    assert all(c.endswith("Bob.") for c in chunks)


@pytest.mark.parametrize("limit", [5, 12, 30])
def test_chinese_chunks_respect_the_token_limit_and_never_split_a_character(tokenizer, limit):
    chunks = chunk_text(CHINESE, tokenizer, limit)
    assert len(chunks) > 1
    assert all(len(tokenizer(c, add_special_tokens=False)["input_ids"]) <= limit for c in chunks)
    assert "".join(chunks) == CHINESE


def test_chunking_with_a_tokenizers_object_built_here():
    word_level = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2, ".": 3}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    text = "a b c. d e f g h i j k. l"
    chunks = chunk_text(text, word_level, 4)
    assert chunks == ["a b c.", "d e f g", "h i j", "k. l"]  # "k." stays whole
    assert all(TokenCounter(word_level).count(c) <= 4 for c in chunks)


def test_a_long_word_is_cut_inside(tokenizer):
    chunks = chunk_text("x" * 300, tokenizer, 7)
    assert "".join(chunks) == "x" * 300
    assert all(len(tokenizer(c, add_special_tokens=False)["input_ids"]) <= 7 for c in chunks)


# ------------------------------------------------------------------------------- corpus and sample


def test_corpus_units_ids_and_errors(tokenizer, tmp_path):
    (tmp_path / "doc.txt").write_text("First para.\n\nSecond para.\nSame para.\n", encoding="utf-8")
    files = corpus_files([tmp_path / "doc.txt"])
    by_unit = {
        unit: [c.id for c in iter_chunks(files, tokenizer, 256, unit)]
        for unit in ("file", "paragraph", "line")
    }
    assert by_unit == {
        "file": ["doc.txt:1:1"],
        "paragraph": ["doc.txt:1:1", "doc.txt:2:1"],
        "line": ["doc.txt:1:1", "doc.txt:3:1", "doc.txt:4:1"],
    }
    (tmp_path / "x.csv").write_text("a")
    stats = CorpusStats()
    assert corpus_files([tmp_path], stats) == [(tmp_path / "doc.txt", "doc.txt")]
    assert stats.ignored_files == [str(tmp_path / "x.csv")]
    with pytest.raises(DataError, match="not a corpus file"):
        corpus_files([tmp_path / "x.csv"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(DataError) as info:
        list(iter_chunks(corpus_files([bad]), tokenizer))
    assert (info.value.line, info.value.field) == (2, "text")


def test_sample_is_seeded_and_in_corpus_order():
    chunks = [Chunk(str(i), f"text {i}") for i in range(100)]
    first = [c.id for c in sample_chunks(iter(chunks), 10, seed=1)]
    assert first == [c.id for c in sample_chunks(iter(chunks), 10, seed=1)]
    assert first != [c.id for c in sample_chunks(iter(chunks), 10, seed=2)]
    assert first == sorted(first, key=int) and len(set(first)) == 10
    assert [c.id for c in sample_chunks(iter(chunks[:5]), 10)] == ["0", "1", "2", "3", "4"]


# ------------------------------------------------------------------------- parsing, filtering, vote


def test_parse_output_shapes():
    assert parse_output('[("Alice", "person"), ("Paris", "city")]') == (
        [("Alice", "person"), ("Paris", "city")],
        0,
    )
    assert parse_output('```json\n[{"张三": "人物", "北京": "地点"}]\n```') == (
        [("张三", "人物"), ("北京", "地点")],
        0,
    )
    assert parse_output("Sure! [['a', 'b'], ['c'], 5]") == ([("a", "b")], 2)
    assert parse_output("[]") == ([], 0)
    assert parse_output("no list here") is None
    assert parse_output('[("unterminated", ') is None
    assert parse_output('{"a": "b"}') is None


def test_filter_output_counts_each_reason():
    stats = FilterStats()
    output = repr(
        [
            (" Alice ", "person"),
            ("Alice", "person"),
            ("", "x"),
            ("Bob", " "),
            ("Bob", "y" * 51),
            ("Bob", "N/A"),
            ("city", "City"),
            ("Rome", "city"),
            ("Bob", "y" * 50),
        ]
    )
    kept = filter_output(output, "Alice and Bob", stats, "c1", rules="rait")
    assert kept == [("Alice", "person"), ("Bob", "y" * 50)]
    assert dict(stats.dropped) == {
        "duplicate": 1,
        "empty_mention": 1,
        "empty_type": 1,
        "type_too_long": 1,
        "placeholder_type": 1,
        "mention_equals_type": 1,
        "mention_not_in_passage": 1,
    }
    assert stats.examples["mention_not_in_passage"] == [{"chunk": "c1", "mention": "Rome", "type": "city"}]
    assert filter_output("garbage", "Alice", stats) is None and stats.unparseable == 1


def test_ra_it_filter_rules():
    """The reference's filter: 20 characters (Chinese) / words, in the passage ignoring case, its invalid
    types (both "entity type" and "entity", which its missing comma joined), one bracket pair stripped."""
    stats = FilterStats()
    passage = "《三体》的作者刘慈欣在【阳泉】工作，Apple Inc 也在。" + "长" * 21
    output = [
        ("《三体》", "作品"),
        ("三体", "作品"),
        ("【阳泉】", "地点"),
        ("apple inc", "公司"),
        ("刘慈欣", "entity"),
        ("刘慈欣", "Entity Type"),
        ("刘慈欣", "其他"),
        ("长" * 21, "词"),
        ("长" * 20, "词"),
        ("北京", "地点"),
    ]
    kept = filter_output(output, passage, stats, "c1", rules="ra-it", lang="zh")
    assert kept == [("三体", "作品"), ("阳泉", "地点"), ("apple inc", "公司"), ("长" * 20, "词")]
    assert dict(stats.dropped) == {
        "duplicate": 1,  # 《三体》 stripped to 三体, already kept
        "invalid_type": 3,
        "mention_too_long": 1,
        "mention_not_in_passage": 1,
    }
    words = " ".join(["w"] * 21)
    assert drop_reason(words, "t", words, lang="en") == "mention_too_long"
    assert drop_reason(words[2:], "t", words, lang="en") is None


def test_min_agree_thresholds():
    assert [resolve_min_agree("majority", n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    assert resolve_min_agree("all", 3) == 3
    assert resolve_min_agree("2", 3) == 2
    assert resolve_min_agree("0.5", 4) == 2 and resolve_min_agree(0.34, 3) == 2
    assert resolve_min_agree("1.0", 3) == 3
    for bad in ("4", "0", "1.5", "most"):
        with pytest.raises(ValueError):
            resolve_min_agree(bad, 3)


def test_vote_on_hand_made_outputs():
    a = [("Alice", "person"), ("Paris", "city"), ("Google", "company")]
    b = [("Alice", "Person"), ("Paris", "location"), ("Google", "company"), ("Google", "COMPANY")]
    c = [("Paris", "city"), ("Bob", "person")]
    assert vote([a, b, c], 2) == [("Alice", "person"), ("Paris", "city"), ("Google", "company")]
    assert vote([a, b, c], 3) == []
    assert vote([a, None, c], 2) == [("Paris", "city")]
    assert vote([None, b, c], 1) == [
        ("Alice", "Person"),
        ("Paris", "location"),
        ("Google", "company"),
        ("Paris", "city"),
        ("Bob", "person"),
    ]


# --------------------------------------------------------------------------------- specs and prompts


def test_teacher_specs_and_prompt_files(tmp_path, monkeypatch):
    assert TeacherSpec.parse("local") == TeacherSpec("local")
    assert TeacherSpec.parse("local:runs/m") == TeacherSpec("local", "runs/m")
    assert TeacherSpec.parse("openai:gpt-4o-mini") == TeacherSpec("openai", "gpt-4o-mini")
    assert TeacherSpec.parse("openai:llama3:8b@http://127.0.0.1:8080/v1") == TeacherSpec(
        "openai", "llama3:8b", "http://127.0.0.1:8080/v1"
    )
    with pytest.raises(RaitError):
        TeacherSpec.parse("anthropic:claude")
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"user": "no placeholder"}))
    with pytest.raises(DataError, match="placeholder"):
        load_prompt(bad)
    assert Prompt("T: {passage} {x}").messages("a{b}") == [{"role": "user", "content": "T: a{b} {x}"}]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(RaitError, match="OPENAI_API_KEY"):
        OpenAITeacher("gpt-4o-mini")
