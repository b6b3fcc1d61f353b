"""Inference: prefix-reuse decoding equals the naive path; answers are parsed and located; jobs resume."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from typer.testing import CliRunner

from rait.answers import Answer, finish_reason
from rait.chat import encode_turns, stop_token_ids
from rait.cli import app
from rait.errors import DataError, RaitError
from rait.evaluation import evaluate_file
from rait.fileio import write_jsonl
from rait.inference import (
    Answerer,
    PassageQuery,
    PredictConfig,
    Predictor,
    VllmPredictor,
    answer_mentions,
    entities_from_answers,
    locate,
    meta_path,
    predict_records,
    run_predict,
)
from rait.inference.entities import is_word_char
from rait.records import Mention, Record
from rait.templates import prompt_turns, question_turn
from rait.testing import save_tiny_model, tiny_model_and_tokenizer

MAX_NEW = 12
EN_EXAMPLE = Record(
    "ex-en", "Obama visited Paris.", [Mention("Obama", "person"), Mention("Paris", "location")]
)
ZH_EXAMPLE = Record("ex-zh", "马云在杭州。", [Mention("马云", "人物"), Mention("杭州", "地点")])
QUERIES = [
    PassageQuery(
        "Barack Obama won the Nobel Peace Prize in Oslo.", ("person", "award", "a much longer type name", "x")
    ),
    PassageQuery("Oslo.", ("person", "city"), (EN_EXAMPLE,)),
    PassageQuery("马云于1999年在杭州创立了阿里巴巴集团。", ("人物", "组织机构", "地点"), (), "zh"),
    PassageQuery("No types are asked about this one.", ()),
    PassageQuery("北京是中华人民共和国的首都。", ("地点", "国家或地区名称"), (ZH_EXAMPLE,), "zh"),
    PassageQuery(
        "A passage about Oslo and Obama, with many types.",
        tuple(f"type {i}" for i in range(9)),
        (EN_EXAMPLE,),
    ),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _stopping_model(arch: str):
    """The tiny random model in float64 (no float ties), with the end-of-turn token made to win wherever
    one chosen token would: the token first generated at the most different steps, so that answers end
    at different steps (a random model never stops on its own)."""
    model, tokenizer = tiny_model_and_tokenizer(arch)
    model = model.double()
    predictor = Predictor(model, tokenizer, max_new_tokens=MAX_NEW)
    first_steps: dict[int, set[int]] = {}
    for query in QUERIES:
        prefix, suffixes = predictor._token_ids(tokenizer, query)
        for out in predictor._greedy([prefix], [0] * len(suffixes), suffixes) if suffixes else []:
            for token in set(out):
                first_steps.setdefault(token, set()).add(out.index(token))
    chosen = max(first_steps, key=lambda token: (len(first_steps[token]), -token))
    with torch.no_grad():
        model.lm_head.weight[stop_token_ids(tokenizer)[0]] = model.lm_head.weight[chosen] * 1.01
    return model, tokenizer


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def model_and_naive(request):
    model, tokenizer = _stopping_model(request.param)
    predictor = Predictor(model, tokenizer, max_new_tokens=MAX_NEW)
    naive = [predictor.answer_naive(q.text, q.types, q.examples, q.lang) for q in QUERIES]
    lengths = []
    for q in QUERIES:
        for entity_type in q.types:
            turns = [
                *prompt_turns(q.text, q.examples, q.lang or "en"),
                question_turn(entity_type, q.lang or "en"),
            ]
            ids = encode_turns(tokenizer, turns, add_generation_prompt=True)
            lengths.append(len(predictor._greedy([[]], [0], [ids])[0]))
    return model, tokenizer, naive, lengths


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_prefix_reuse_gives_the_naive_answers(model_and_naive, batch_size):
    model, tokenizer, naive, lengths = model_and_naive
    # the check is only meaningful if answers end at different steps, some early and some at the cap
    assert min(lengths) < MAX_NEW and max(lengths) == MAX_NEW and len(set(lengths)) >= 3
    predictor = Predictor(model, tokenizer, max_new_tokens=MAX_NEW, batch_size=batch_size)
    fast = predictor.answer_many(QUERIES)
    assert fast == naive
    assert [len(a) for a in fast] == [len(q.types) for q in QUERIES]


def test_iter_answers_yields_every_passage_in_order(model_and_naive):
    model, tokenizer, naive, _ = model_and_naive
    predictor = Predictor(model, tokenizer, max_new_tokens=MAX_NEW, batch_size=3)
    assert list(predictor.iter_answers(QUERIES)) == list(enumerate(naive))


# ------------------------------------------------------------------------------- parsing and offsets


def test_locate_returns_every_whole_word_occurrence():
    text = "AI at MAIN: the AI lab. AI!"
    assert locate(text, "AI") == [(0, 2), (16, 18), (24, 26)]
    assert locate("MAIN road", "AI") == [(1, 3)]  # only inside a word: kept rather than lost
    assert locate("Barack Obama met obama.", "OBAMA") == [(7, 12), (17, 22)]  # case-insensitive fallback
    assert locate("马云在杭州，杭州很美。", "杭州") == [(3, 5), (6, 8)]
    assert locate("Paris", "London") == []


def test_word_characters_are_letters_and_digits_of_spaced_scripts():
    assert all(is_word_char(c) for c in "aZé9ßжΩ٣")  # Latin, Cyrillic, Greek, Arabic-Indic digit
    # CJK, kana, Hangul, Thai, Lao, Myanmar, Khmer, CJK extension B, full-width Latin
    unspaced = "杭州かナ서울ไทยລາວမြန်ខ្មែរ𠀀Ａ"
    assert not any(is_word_char(c) for c in unspaced + " .,-'_")
    assert locate("서울에서 서울로", "서울") == [(0, 2), (5, 7)]  # Korean particles attach to the noun


def test_entities_have_offsets_flags_and_malformed_counts():
    text = "New York City is bigger than York. Obama lives in New York City."
    types = ["location", "person", "award", "date"]
    answers = [
        '["New York", "New York City", "York"]',
        '["Obama", "Michelle Obama"]',
        "no list here",
        '["x", 1]',
    ]
    entities, malformed = entities_from_answers(text, types, answers)
    assert malformed == 2
    for e in entities:
        if e["found"]:
            assert text[e["start"] : e["end"]] == e["text"]
    located = [(e["text"], e["type"], e["start"]) for e in entities if e["found"]]
    # "New York" inside "New York City" is dropped; the standalone "York" at 29 is kept
    assert located == [
        ("New York City", "location", 0),
        ("York", "location", 29),
        ("Obama", "person", 35),
        ("New York City", "location", 50),
    ]
    missing = [e for e in entities if not e["found"]]
    assert missing == [
        {"text": "Michelle Obama", "type": "person", "start": None, "end": None, "found": False}
    ]


def test_answer_mentions_keeps_the_models_spelling():
    assert answer_mentions(' ["The Beatles", "the Beatles", "The Beatles"] trailing') == (
        ["The Beatles", "the Beatles"],
        True,
    )
    assert answer_mentions('["unterminated"') == ([], False)


# ------------------------------------------------------------------------------- jobs


class ScriptedAnswerer(Answerer):
    """Answers from a script {(text, type): answer} ("[]" otherwise); counts predictions per passage and
    can crash after a number of passages."""

    def __init__(self, script: dict[tuple[str, str], str], crash_after: int | None = None):
        self.script, self.crash_after, self.lang = script, crash_after, "en"
        self.calls: Counter[tuple[str, str]] = Counter()
        self.examples: dict[str, list[str]] = {}

    def iter_answers(self, queries):
        for index, query in enumerate(queries):
            self.examples[query.text] = [example.id for example in query.examples]
            if self.crash_after is not None and sum(self.calls.values()) >= self.crash_after:
                raise RuntimeError("simulated crash")
            for entity_type in query.types:
                self.calls[(query.text, entity_type)] += 1
            yield index, [self.script.get((query.text, t), "[]") for t in query.types]


def _records(n: int = 6) -> list[Record]:
    records = []
    for i in range(n):
        text = f"Person{i} works at Company{i} in City{i}."
        mentions = [Mention(f"Person{i}", "person", 0, len(f"Person{i}"))]
        records.append(Record(f"r{i}", text, mentions, types=["person", "organization"], source="toy"))
    return records


def _script(records: list[Record]) -> dict:
    return {(r.text, "person"): json.dumps([r.mentions[0].text]) for r in records}


def test_predict_records_writes_scorable_rows_and_counts_malformed(tmp_path):
    records = _records(3)
    script = _script(records) | {(records[1].text, "organization"): "I think it is Company1"}
    out = tmp_path / "preds.jsonl"
    stats = predict_records(records, ScriptedAnswerer(script), out, lang="en", progress=False)
    assert (stats.n_predicted, stats.n_queries, stats.n_malformed) == (3, 6, 1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["record_id"], r["type"]) for r in rows] == [
        (f"r{i}", t) for i in range(3) for t in ("person", "organization")
    ]
    assert (
        rows[0]["predicted_spans"] == [[0, 7]]
        and rows[0]["gold_spans"] == [[0, 7]]
        and rows[0]["gold"] == ["Person0"]
    )
    report = evaluate_file(out, strict_spans=True)
    assert report.benchmarks["toy"].f1 == pytest.approx(100.0) and report.n_unparseable == 1


def test_resume_after_a_crash_writes_each_query_once_and_redoes_the_torn_chunk_whole(tmp_path):
    records = _records(12)
    out = tmp_path / "preds.jsonl"
    first = ScriptedAnswerer(_script(records), crash_after=7 * 2)  # dies while answering the 8th passage
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict_records(records, first, out, lang="en", chunk_size=5, progress=False)
    assert len(out.read_text().splitlines()) == 7 * 2
    second = ScriptedAnswerer(_script(records))
    stats = predict_records(records, second, out, lang="en", chunk_size=5, progress=False)
    assert (stats.n_resumed, stats.n_predicted) == (7, 5)
    # the first chunk (passages 0-4) is skipped; the torn one (5-9) is asked whole, as in an uninterrupted run
    assert set(second.calls) == {(r.text, t) for r in records[5:] for t in ("person", "organization")}
    assert evaluate_file(out).n_queries == 24  # evaluate_file rejects duplicate queries


class BatchSensitiveAnswerer(Answerer):
    """Answers that depend on the batch, as bf16 answers do: each names the first passage of its batch."""

    def __init__(self, crash_after: int | None = None):
        self.crash_after, self.lang, self.answered = crash_after, "en", 0

    def iter_answers(self, queries):
        first = queries[0].text.split()[0]
        for index, query in enumerate(queries):
            if self.crash_after is not None and self.answered >= self.crash_after:
                raise RuntimeError("simulated crash")
            self.answered += 1
            yield index, [json.dumps([first])] * len(query.types)


def test_a_resumed_run_writes_the_bytes_of_an_uninterrupted_one_though_answers_depend_on_the_batch(tmp_path):
    records = _records(12)
    whole = tmp_path / "whole.jsonl"
    predict_records(records, BatchSensitiveAnswerer(), whole, lang="en", chunk_size=5, progress=False)
    resumed = tmp_path / "resumed.jsonl"
    for crash_after in (
        3,
        9,
        2,
    ):  # killed three times: in the first chunk, in the second, in the second again
        with pytest.raises(RuntimeError, match="simulated crash"):
            predict_records(
                records, BatchSensitiveAnswerer(crash_after), resumed, lang="en", chunk_size=5, progress=False
            )
    predict_records(records, BatchSensitiveAnswerer(), resumed, lang="en", chunk_size=5, progress=False)
    assert resumed.read_bytes() == whole.read_bytes()


def test_resume_completes_a_torn_passage(tmp_path):
    records = _records(2)
    out = tmp_path / "preds.jsonl"
    predict_records(records[:1], ScriptedAnswerer(_script(records)), out, lang="en", progress=False)
    first_row = out.read_text().splitlines()[0]
    out.write_text(first_row + "\n" + '{"benchmark": "toy", "record_id": "r0", "ty')  # crash mid-write
    answerer = ScriptedAnswerer(_script(records))
    predict_records(records, answerer, out, lang="en", progress=False)
    # the torn chunk is asked whole (the batch of an uninterrupted run); only the missing rows are written
    assert answerer.calls == Counter({(r.text, t): 1 for r in records for t in ("person", "organization")})
    assert evaluate_file(out).n_queries == 4


def test_duplicate_record_ids_are_an_error(tmp_path):
    records = _records(2)
    records[1].id = "r0"
    with pytest.raises(DataError, match="duplicate record id 'r0'"):
        predict_records(records, ScriptedAnswerer({}), tmp_path / "p.jsonl", progress=False)


def test_run_predict_refuses_to_resume_with_other_settings(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("Person1 works at Company1.\n\nPerson2 lives in City2.\n", encoding="utf-8")
    config = PredictConfig(output=tmp_path / "p.jsonl", input=texts, types=["person"], max_new_tokens=8)
    stats = run_predict(config, progress=False, answerer=ScriptedAnswerer({}))
    assert (stats.n_passages, stats.n_predicted) == (2, 2)
    config.max_new_tokens = 16
    with pytest.raises(RaitError, match="max_new_tokens: 8"):
        run_predict(config, progress=False, answerer=ScriptedAnswerer({}))


@pytest.mark.parametrize(
    ("examples", "threshold", "pool_size", "per_passage", "distinct"),
    [("out-domain", 0.0, None, 2, 4), ("out-domain", 1e6, None, 0, 0), ("in-domain", 1e6, 1, 1, 1)],
)
def test_run_predict_retrieves_examples_from_a_pool(
    tmp_path, monkeypatch, examples, threshold, pool_size, per_passage, distinct
):
    """Out-domain: k nearest kept only above the BM25 threshold; in-domain: k nearest of a pool of N."""
    monkeypatch.setenv("RAIT_CACHE_DIR", str(tmp_path / "cache"))
    pool = [
        Record(f"p{i}", f"Person{i} founded Company{i} in City{i}.", [Mention(f"City{i}", "city")])
        for i in range(4)
    ]
    write_jsonl(tmp_path / "pool.jsonl", [r.to_dict() for r in pool])
    write_jsonl(tmp_path / "test.jsonl", [r.to_dict() for r in _records(4)])
    config = PredictConfig(
        output=tmp_path / "p.jsonl",
        input=tmp_path / "test.jsonl",
        examples=examples,
        pool=str(tmp_path / "pool.jsonl"),
        pool_size=pool_size,
        k=2,
        bm25_threshold=threshold,
        embedder="hashing",
        lang="en",
    )
    answerer = ScriptedAnswerer({})
    stats = run_predict(config, progress=False, answerer=answerer)
    assert stats.n_with_examples == (4 if per_passage else 0)
    assert [len(ids) for ids in answerer.examples.values()] == [per_passage] * 4
    assert len({i for ids in answerer.examples.values() for i in ids}) == distinct


def test_run_predict_rejects_incomplete_example_settings(tmp_path):
    config = PredictConfig(output=tmp_path / "p.jsonl", benchmarks=["crossner_ai"], examples="out-domain")
    with pytest.raises(RaitError, match="needs --pool"):
        run_predict(config, progress=False, answerer=ScriptedAnswerer({}))


def test_cli_predicts_a_text_file_with_a_tiny_model_and_resumes(tmp_path):
    model_dir = save_tiny_model(tmp_path / "tiny")
    texts = tmp_path / "texts.txt"
    texts.write_text("Barack Obama was born in Honolulu.\n北京是中华人民共和国的首都。\n", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    args = [
        "predict",
        "-m",
        str(model_dir),
        "-i",
        str(texts),
        "--types",
        "person, location",
        "-o",
        str(out),
        "--max-new-tokens",
        "4",
        "-q",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["record_id"], r["type"], r["benchmark"]) for r in rows] == [
        ("line-1", "person", "texts"),
        ("line-1", "location", "texts"),
        ("line-2", "person", "texts"),
        ("line-2", "location", "texts"),
    ]
    again = CliRunner().invoke(app, args)
    assert (
        again.exit_code == 0 and "0 passages predicted" in again.output and "2 already done" in again.output
    )
    assert "hit the 4-token cap" in result.output
    settings = json.loads(meta_path(out).read_text())["settings"]
    assert (settings["system_prompt"], settings["stop_repetition"]) == ("none", True)
    for option, name in (
        ("--system-prompt=Be brief.", "system_prompt"),
        ("--no-stop-repetition", "stop_rep"),
    ):
        other = CliRunner().invoke(app, [*args, option])
        assert other.exit_code != 0 and name in str(other.exception)  # not mixed into that output


@pytest.mark.skipif(__import__("importlib").util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_without_vllm_is_a_clear_error():
    with pytest.raises(RaitError, match=r"pip install 'rait\[gpu\]'"):
        VllmPredictor("some/model")


def test_system_prompt_starts_every_prompt_on_both_paths(model_and_naive):
    model, tokenizer, _, _ = model_and_naive
    predictor = Predictor(model, tokenizer, max_new_tokens=MAX_NEW, batch_size=4, system_prompt="Be brief.")
    assert tokenizer.decode(list(predictor.system_ids)) == "<|im_start|>system\nBe brief.<|im_end|>\n"
    prefix, _ = predictor._token_ids(tokenizer, QUERIES[0])
    assert prefix[: len(predictor.system_ids)] == list(predictor.system_ids)
    naive = [predictor.answer_naive(q.text, q.types, q.examples, q.lang) for q in QUERIES]
    assert predictor.answer_many(QUERIES) == naive


def test_run_predict_stopwords_and_identical_examples(tmp_path, monkeypatch):
    """--stopwords reaches the pool's BM25; --allow-identical-examples lets the test passage's own copy in."""
    monkeypatch.setenv("RAIT_CACHE_DIR", str(tmp_path / "cache"))
    pool = [Record(f"p{i}", f"the of Kim{i}", [Mention(f"Kim{i}", "person")]) for i in range(3)]
    pool.append(Record("copy", "the of Zed", [Mention("Zed", "person")]))
    pool += [Record(f"x{i}", f"Ann{i} met Bob{i}", [Mention(f"Ann{i}", "person")]) for i in range(6)]
    # (with too few other passages, gensim's average idf is negative, and so "the"'s floored idf)
    write_jsonl(tmp_path / "pool.jsonl", [r.to_dict() for r in pool])
    write_jsonl(tmp_path / "test.jsonl", [Record("q", "the of Zed", types=["person"]).to_dict()])
    (tmp_path / "stop.txt").write_text("the\nof\n", encoding="utf-8")

    def examples(name, **options) -> list[str]:
        config = PredictConfig(
            output=tmp_path / f"{name}.jsonl",
            input=tmp_path / "test.jsonl",
            examples="out-domain",
            pool=str(tmp_path / "pool.jsonl"),
            k=4,
            bm25_threshold=1e-9,
            embedder="hashing",
            lang="en",
            **options,
        )
        answerer = ScriptedAnswerer({})
        run_predict(config, progress=False, answerer=answerer)
        return sorted(i for ids in answerer.examples.values() for i in ids)

    assert examples("plain") == ["p0", "p1", "p2"]  # shared "the of" scores above 0; the copy is excluded
    assert examples("stop", stopwords=str(tmp_path / "stop.txt")) == []
    assert examples("leak", allow_identical_examples=True) == ["copy", "p0", "p1", "p2"]


class ForcedPredictor(Predictor):
    """The tiny model's decoding loop with the next token forced: ``block[position % len(block)]``."""

    block: tuple[int, ...] = (5,)

    def _forward(self, ids, mask, positions, cache, select):
        logits = super()._forward(ids, mask, positions, cache, select)
        if logits is None:
            return None
        chosen = positions.reshape(-1)[select].tolist()
        forced = torch.tensor([self.block[p % len(self.block)] for p in chosen])
        return torch.full_like(logits, -1e9).scatter(1, forced[:, None].to(logits.device), 0.0)


@pytest.mark.parametrize("block", [(5,), (5, 6, 7, 8, 9)])
def test_a_row_that_repeats_itself_stops_and_says_so(block):
    model, tokenizer = tiny_model_and_tokenizer()
    predictor = ForcedPredictor(model, tokenizer, max_new_tokens=100, batch_size=4)
    predictor.block = block
    prefix, suffixes = predictor._token_ids(tokenizer, QUERIES[0])
    outputs = predictor._greedy([prefix], [0] * len(suffixes), suffixes)
    assert all(len(out) == 32 and out.finish_reason == "repetition" for out in outputs)
    answers = predictor.answer_many(QUERIES[:2])
    assert {finish_reason(a) for passage in answers for a in passage} == {"repetition"}
    assert answers[0] == predictor.answer_naive(QUERIES[0].text, QUERIES[0].types)
    predictor.stop_repetition = False
    outputs = predictor._greedy([prefix], [0] * len(suffixes), suffixes)
    assert all(len(out) == 100 and out.finish_reason == "length" for out in outputs)


def test_vllm_requests_carry_the_passage_and_the_word_rule():
    """Constrained vLLM requests carry the passage and whether strings keep to word boundaries (the logits
    processor reads both); an answer is closed with the same rule: '["Hawa"]' is complete for
    ``constrained`` but cuts a word for ``constrained-words``."""
    from types import SimpleNamespace

    class Params(SimpleNamespace):
        def clone(self):
            return Params(**vars(self))

    class FakeLLM:
        def generate(self, prompts, params, lora_request=None, use_tqdm=False):
            self.params = params
            completion = SimpleNamespace(token_ids=[1], text='["Hawa"]', finish_reason="stop")
            return [SimpleNamespace(outputs=[completion]) for _ in prompts]

    _, tokenizer = tiny_model_and_tokenizer()
    text = "Barack Obama was born in Honolulu, Hawaii."
    found = {}
    for decoding in ("constrained", "constrained-words"):
        vllm_predictor = object.__new__(VllmPredictor)
        vllm_predictor.llm, vllm_predictor.tokenizer, vllm_predictor.lang = FakeLLM(), tokenizer, "en"
        vllm_predictor.system_ids, vllm_predictor.stop_repetition, vllm_predictor.lora = (), True, None
        vllm_predictor.decoding, vllm_predictor._vocab, vllm_predictor.params = decoding, None, Params()
        found[decoding] = vllm_predictor.answer(text, ["location", "person"])
        extra = [params.extra_args for params in vllm_predictor.llm.params]
        assert extra == [{"rait_passage": text, "rait_words": decoding == "constrained-words"}] * 2
    assert found == {"constrained": ['["Hawa"]'] * 2, "constrained-words": ["[]"] * 2}


def test_finish_reasons_of_the_stopping_model(model_and_naive):
    model, tokenizer, naive, lengths = model_and_naive
    reasons = [finish_reason(a) for passage in naive for a in passage]
    assert reasons == ["length" if n == MAX_NEW else "stop" for n in lengths]


def test_capped_and_looped_answers_are_counted_in_stats_and_rows(tmp_path):
    records = _records(3)
    script = {
        (records[0].text, "person"): Answer('["Person0"]', "stop"),
        (records[1].text, "person"): Answer('["Person1", "Pers', "length"),
        (records[2].text, "organization"): Answer('["Company2", "Company2", "Comp', "repetition"),
    }
    out = tmp_path / "preds.jsonl"
    stats = predict_records(records, ScriptedAnswerer(script), out, lang="en", progress=False)
    assert (stats.n_capped, stats.n_repetition, stats.n_malformed) == (1, 1, 2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["finish_reason"] for r in rows] == ["stop", None, "length", None, None, "repetition"]
    report = evaluate_file(out)
    assert (report.n_capped, report.n_repetition) == (1, 1)


def test_vllm_completions_are_cut_where_the_transformers_path_stops():
    from types import SimpleNamespace

    _, tokenizer = tiny_model_and_tokenizer()
    vllm_predictor = object.__new__(VllmPredictor)
    vllm_predictor.tokenizer, vllm_predictor.stop_repetition = tokenizer, True
    vllm_predictor.decoding = "free"
    looping = [40, 41] * 30
    completion = SimpleNamespace(token_ids=looping, text=tokenizer.decode(looping), finish_reason="length")
    answer = vllm_predictor._answer(completion)
    assert finish_reason(answer) == "repetition" and answer == tokenizer.decode(looping[:32]).strip()
    vllm_predictor.decoding = "constrained"  # closes its answers itself: never cut
    assert finish_reason(vllm_predictor._answer(completion)) == "length"
    vllm_predictor.decoding, vllm_predictor.stop_repetition = "free", False
    assert finish_reason(vllm_predictor._answer(completion)) == "length"
    done = SimpleNamespace(token_ids=[40, 41], text=" [] ", finish_reason="stop")
    assert vllm_predictor._answer(done) == "[]" and finish_reason(vllm_predictor._answer(done)) == "stop"


def test_max_examples_samples_an_input_file_as_benchmarks_are_sampled(tmp_path):
    from rait.data.benchmarks import sample_passages

    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"Person{i} works at Company{i}.\n" for i in range(10)))
    config = PredictConfig(
        output=tmp_path / "p.jsonl", input=texts, types=["person"], input_max_examples=3, seed=7
    )
    answerer = ScriptedAnswerer({})
    stats = run_predict(config, progress=False, answerer=answerer)
    assert stats.n_passages == 3
    expected = sample_passages([f"Person{i} works at Company{i}." for i in range(10)], 3, seed=7)
    assert sorted(answerer.examples) == sorted(expected)
    assert json.loads(meta_path(config.output).read_text())["settings"]["input_max_examples"] == 3


def test_a_failure_before_the_first_row_leaves_no_settings_file(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("Ada met Bo.\n")
    config = PredictConfig(output=tmp_path / "p.jsonl", input=texts, types=["person"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_predict(config, progress=False, answerer=ScriptedAnswerer({}, crash_after=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.txt"]
