"""Copy-constrained decoding: answers are always JSON lists of distinct passage substrings, closed before the
cap; a model that would write a valid answer writes the same answer under the constraint."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import LlamaForCausalLM
from typer.testing import CliRunner

from rait.answers import parse_answer_items
from rait.chat import stop_token_ids
from rait.cli import app
from rait.errors import RaitError
from rait.inference import PassageQuery, Predictor
from rait.inference.constrained import (
    CLOSED,
    DONE,
    Cursor,
    PassageConstraint,
    RequestConstraint,
    TokenVocab,
    is_copy_answer,
    token_byte_strings,
)
from rait.testing import save_tiny_model, tiny_model_and_tokenizer, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EN_WORDS = "Barack Obama Paris Apple Inc. released iPhone the of and in Marie Curie Nobel Prize 2007".split()
ODD = ['"', "\\", "]", "[", "\n", "\t", "'", ",", ", ", '", "', "é", "😀", "\u2028"]
ZH_CHARS = "北京是中华人民共和国的首都马云于年在杭州创立了阿里巴巴集团患者出现发热咳嗽“”，。：【】"


def random_passage(rng: random.Random, lang: str) -> str:
    if lang == "en":
        parts = [
            rng.choice(EN_WORDS) if rng.random() < 0.8 else rng.choice(ODD) for _ in range(rng.randint(1, 14))
        ]
        return " ".join(parts)
    chars = [
        rng.choice(ZH_CHARS) if rng.random() < 0.85 else rng.choice(ODD) for _ in range(rng.randint(1, 20))
    ]
    return "".join(chars)


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = tiny_model_and_tokenizer("llama")
    return model.double(), tokenizer


@pytest.fixture(scope="module")
def vocab(tiny):
    _, tokenizer = tiny
    return TokenVocab(tokenizer, stop_token_ids(tokenizer))


# ------------------------------------------------------------------------------ the grammar, byte by byte


def walk(constraint: PassageConstraint, text: str) -> Cursor | None:
    return constraint.advance(Cursor(), text.encode())


def test_grammar_accepts_escaped_substrings_and_refuses_the_rest(vocab):
    passage = 'He said "hi" to C:\\dir, [x] and 杭州\n'
    c = PassageConstraint(passage, vocab)
    good = [
        "[]",
        '["He said"]',
        '["\\"hi\\""]',
        '["C:\\\\dir"]',
        '["杭州\\n", "州"]',
        '["[x"]',
        '["He", "e"]',
    ]
    for answer in good:
        cursor = walk(c, answer)
        assert cursor is not None and cursor.state == CLOSED, answer
        assert is_copy_answer(answer, passage)
    bad = [
        '["he said"]',  # case kept
        '["said "hi""]',  # the passage's quotes must be escaped
        '["He", "He"]',  # a repeat
        '["He","e"]',  # separator is ', '
        '[""]',  # empty string
        '["\\"]',  # a string cannot close inside an escape
        ' ["He"]',
        '["He"]]',
    ]
    for answer in bad:
        cursor = walk(c, answer)
        assert cursor is None or cursor.state != CLOSED, answer


def word_bounded(item: str, text: str) -> bool:
    """Whether ``item`` occurs in ``text`` neither starting nor ending between two letters or digits of a
    spaced script (in these tests: anything alphanumeric but Han characters)."""

    def inside(left: str, right: str) -> bool:
        return all(c.isalnum() and not "\u4e00" <= c <= "\u9fff" for c in (left, right))

    starts = [i for i in range(len(text)) if text.startswith(item, i)]
    return any(
        not (s and inside(text[s - 1], text[s]))
        and not (s + len(item) < len(text) and inside(text[s + len(item) - 1], text[s + len(item)]))
        for s in starts
    )


def test_word_mode_starts_and_closes_strings_only_at_word_boundaries(vocab):
    passage = "Barack Obama was born in Honolulu, Hawaii, and used an iPhone 3G. 我用iPhone拍了杭州。"
    c = PassageConstraint(passage, vocab, words=True)
    for answer in ['["Hawaii"]', '["Honolulu, Hawaii"]', '["Obama was", ","]', '["杭州", "iPhone 3G"]']:
        assert walk(c, answer).state == CLOSED, answer
        assert all(word_bounded(item, passage) for item in json.loads(answer))
    for answer in ['["Hawa"]', '["awaii"]', '["Phone"]', '["iPho"]', '["3"]', '["Obama wa"]']:
        assert walk(c, answer) is None, answer
        assert walk(PassageConstraint(passage, vocab), answer).state == CLOSED  # the character mode's strings
    for prefix in ('["Ha', '["Hawaii", "', '["Hawaii", "Honolulu'):  # closing counts whole words
        cursor = walk(c, prefix)
        steps = c.need(cursor)
        assert steps < 20 and c.need(walk(PassageConstraint(passage, vocab), prefix)) <= steps


def test_characters_the_vocabulary_cannot_write_are_left_out(tiny):
    _, tokenizer = tiny
    vocab = TokenVocab(tokenizer, stop_token_ids(tokenizer))
    vocab.missing_bytes = frozenset({0xF0})  # as if no token wrote the lead byte of 4-byte characters
    c = PassageConstraint("Paris 😀 Oslo", vocab)
    assert walk(c, '["Paris ", "Oslo"]').state == CLOSED
    assert walk(c, '["Paris 😀"]') is None and walk(c, '["😀"]') is None
    assert c.need(walk(c, '["Paris ", "')) < 5


def test_partial_utf8_pieces_are_followed_byte_by_byte(vocab):
    c = PassageConstraint("马云在杭州。", vocab)
    data = '["杭州'.encode()
    cursor = Cursor()
    for i in range(len(data)):  # one byte at a time, through the middle of the 3-byte characters
        cursor = c.advance(cursor, data[i : i + 1])
        assert cursor is not None
    assert c.advance(cursor, b'"]').state == CLOSED
    mid = c.advance(Cursor(), '["杭'.encode()[:-1])  # ends inside 杭: cannot close here
    assert mid is not None and c.advance(mid, b'"') is None
    assert c.need(mid) >= 2


@pytest.mark.parametrize("words", [False, True])
def test_allowed_tokens_equal_a_scan_of_the_whole_vocabulary(vocab, words):
    rng = random.Random(0)
    passages = [random_passage(rng, lang) for lang in ("en", "zh") for _ in range(6)]
    for passage in passages:
        c = PassageConstraint(passage, vocab, words)
        cursor = Cursor()
        for _ in range(12):  # walk a random valid path, comparing at every state
            allowed = set(c.allowed(cursor).tolist())
            scan = set()
            for token, data in enumerate(vocab.token_bytes):
                if token in vocab.stop_ids:
                    if cursor.state == CLOSED:
                        scan.add(token)
                elif data and cursor.state != CLOSED:
                    if c.advance(Cursor(cursor.state, cursor.ends, cursor.content), data) is not None:
                        scan.add(token)
            assert allowed == scan
            choices = [t for t in allowed if c.accept(cursor, t, 100) is not None]
            if not choices:
                break
            cursor = c.accept(cursor, rng.choice(choices), 100)
            if cursor.state == DONE:
                break


def test_token_bytes_of_byte_level_bpe():
    tokenizer = tiny_tokenizer()
    data = token_byte_strings(tokenizer)
    special = set(tokenizer.all_special_ids)
    assert all(data[i] is None for i in special)
    ids = tokenizer("北京 “Obama”", add_special_tokens=False)["input_ids"]
    assert b"".join(data[i] for i in ids).decode() == "北京 “Obama”"
    assert all(bytes([b]) in set(data) for b in range(256))  # every byte is a token: closing always works


# ------------------------------------------------------------------------------ decoding with a model


@pytest.mark.parametrize("decoding", ["constrained", "constrained-words"])
def test_random_model_always_writes_well_formed_answers(tiny, decoding):
    """Property test: a random model forced through the constraint, over many random passages (English and
    Chinese, with quotes, backslashes, ']' and emoji), always answers in the grammar (with word boundaries
    in ``constrained-words``), within the cap, and the batched, prefix-sharing path gives the naive path's
    answers."""
    model, tokenizer = tiny
    rng = random.Random(13)
    queries = [
        PassageQuery(random_passage(rng, lang), ("person", "location", "地点"), (), lang)
        for lang in ("en", "zh")
        for _ in range(30)
    ]
    for cap in (3, 9, 24):
        predictor = Predictor(model, tokenizer, max_new_tokens=cap, batch_size=32, decoding=decoding)
        answers = predictor.answer_many(queries)
        n_items = 0
        for query, passage_answers in zip(queries, answers, strict=True):
            for answer in passage_answers:
                assert is_copy_answer(answer, query.text), (query.text, answer)
                items = parse_answer_items(answer)
                if decoding == "constrained-words":
                    assert all(word_bounded(item, query.text) for item in items), (query.text, answer)
                n_items += len(items)
        if cap == 24:
            assert n_items > 50  # the random model does write strings, not only '[]'
            naive = [predictor.answer_naive(q.text, q.types, q.examples, q.lang) for q in queries[::10]]
            assert naive == answers[::10]
    free = Predictor(model, tokenizer, max_new_tokens=24).answer_many(queries)
    assert not any(is_copy_answer(a, q.text) for q, ans in zip(queries, free, strict=True) for a in ans)


def test_output_token_count_stays_within_the_cap(tiny):
    model, tokenizer = tiny
    predictor = Predictor(model, tokenizer, max_new_tokens=7, decoding="constrained")
    text = "Barack Obama was born in Honolulu, Hawaii."
    prefix, suffixes = predictor._token_ids(tokenizer, PassageQuery(text, ("person", "location")))
    for ids in predictor._greedy([prefix], [0, 0], suffixes, [text, text]):
        answer = tokenizer.decode(ids, skip_special_tokens=True)
        assert len(ids) <= 7 and is_copy_answer(answer.strip(), text)


class ScriptedPredictor(Predictor):
    """The tiny model's predictor, except that after position ``p`` the model prefers ``script[p]`` above
    everything (other scores, and so the constraint's fallbacks, stay the random model's)."""

    script: dict[int, int] = {}

    def _forward(self, ids, mask, positions, cache, select):
        logits = super()._forward(ids, mask, positions, cache, select)
        if logits is not None:
            for row, position in enumerate(positions.reshape(-1)[select].tolist()):
                if position in self.script:
                    logits[row, self.script[position]] = logits[row].max() + 1.0
        return logits


def scripted(
    tiny, answer: str, cap: int, decoding: str, text: str, lang: str = "en", stop: bool = True
) -> str:
    """The answer of a model scripted to write ``answer`` (then the end token when ``stop``)."""
    model, tokenizer = tiny
    lm = LlamaForCausalLM(model.config).double()
    lm.load_state_dict(model.state_dict())
    predictor = ScriptedPredictor(lm, tokenizer, max_new_tokens=cap, decoding=decoding)
    prefix, suffixes = predictor._token_ids(tokenizer, PassageQuery(text, ("person",), (), lang))
    chain = tokenizer(answer, add_special_tokens=False)["input_ids"]
    chain += [stop_token_ids(tokenizer)[0]] if stop else []
    start = len(prefix) + len(suffixes[0]) - 1  # position of the prompt's last token
    predictor.script = {start + i: token for i, token in enumerate(chain)}
    return predictor.answer(text, ["person"], lang=lang)[0]


@pytest.mark.parametrize(
    ("text", "answer", "lang"),
    [
        ("Barack Obama visited Paris, France.", '["Barack Obama", "Paris"]', "en"),
        ('He quoted "Apple Inc." twice.', '["\\"Apple Inc.\\""]', "en"),
        ("马云于1999年在杭州创立了阿里巴巴集团。", '["马云", "阿里巴巴集团"]', "zh"),
        ("No entities here.", "[]", "en"),
    ],
)
def test_a_valid_answer_is_unchanged(tiny, text, answer, lang):
    _, tokenizer = tiny
    n = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
    for cap in (n, n + 1, 40):  # ending exactly at the cap, with room for the end token, and far from it
        for decoding in ("free", "constrained", "constrained-words"):
            assert scripted(tiny, answer, cap, decoding, text, lang) == answer


def test_invalid_answers_are_repaired(tiny):
    text = "Barack Obama visited Paris, France."
    for answer in ['["Barack Obama", "London"]', '["barack obama"]']:
        out = scripted(tiny, answer, 16, "constrained", text)
        assert is_copy_answer(out, text) and out != answer
    loop = '["Paris", "Barack", "Paris", "Paris", "Paris", "Paris'  # repeats "Paris" until the cap
    assert not is_copy_answer(scripted(tiny, loop, 16, "free", text, stop=False), text)
    # a model starting to loop ends its answer: cut after its last complete string
    assert scripted(tiny, loop, 16, "constrained", text, stop=False) == '["Paris", "Barack"]'


def test_word_mode_continues_a_string_the_model_would_close_inside_a_word(tiny):
    text = "Barack Obama was born in Honolulu, Hawaii."
    assert scripted(tiny, '["Hawa"]', 16, "constrained", text) == '["Hawa"]'
    out = scripted(tiny, '["Hawa"]', 16, "constrained-words", text)
    items = parse_answer_items(out)
    assert is_copy_answer(out, text) and items and items[0].startswith("Hawa") and items[0] != "Hawa"
    assert all(word_bounded(item, text) for item in items)


def test_finish_cuts_an_answer_after_its_last_complete_string(vocab):
    c = PassageConstraint('Paris and "Oslo"', vocab)
    for data, expected in [
        ('["Paris", "Oslo', '["Paris"]'),
        ('["Paris", ', '["Paris"]'),
        ('["Par', "[]"),
        ("", "[]"),
        ('["Paris", "\\"Oslo\\""]', '["Paris", "\\"Oslo\\""]'),
    ]:
        assert c.finish(data.encode()).decode() == expected


def test_decoding_option_is_checked(tiny):
    model, tokenizer = tiny
    with pytest.raises(RaitError, match="unknown decoding"):
        Predictor(model, tokenizer, decoding="beam")
    for decoding in ("constrained", "constrained-words"):
        with pytest.raises(RaitError, match="at least 2"):
            Predictor(model, tokenizer, max_new_tokens=1, decoding=decoding)


def test_request_level_processor_matches_the_predictor(tiny):
    """The per-request logits processor (vLLM's interface), driven by a plain greedy loop without any
    cache, writes the answers of the batched predictor's constrained decoding."""
    model, tokenizer = tiny
    cap = 12
    predictor = Predictor(model, tokenizer, max_new_tokens=cap, decoding="constrained")
    vocab = TokenVocab(tokenizer, stop_token_ids(tokenizer))
    for query in (
        PassageQuery('Barack "Obama" visited Paris.', ("person", "location")),
        PassageQuery("马云于1999年在杭州创立了阿里巴巴集团。", ("人物",), (), "zh"),
    ):
        expected = predictor.answer_many([query])[0]
        prefix, suffixes = predictor._token_ids(tokenizer, query)
        for suffix, answer in zip(suffixes, expected, strict=True):
            processor = RequestConstraint(PassageConstraint(query.text, vocab), cap)
            ids, out = prefix + suffix, []
            for _ in range(cap):
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1]
                token = int(processor(out, logits).argmax())
                if token in vocab.stop_ids:
                    break
                out.append(token)
            text = tokenizer.decode(out, skip_special_tokens=True).strip()
            assert processor.constraint.finish(text.encode()).decode() == answer


def test_cli_decoding_option_and_resume_check(tmp_path):
    model_dir = save_tiny_model(tmp_path / "tiny")
    texts = tmp_path / "texts.txt"
    texts.write_text("Barack Obama was born in Honolulu.\n北京是中华人民共和国的首都。\n", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    args = ["predict", "-m", str(model_dir), "-i", str(texts), "--types", "person, location", "-o", str(out)]
    args += ["--max-new-tokens", "12", "-q"]
    result = CliRunner().invoke(app, [*args, "--decoding", "constrained"])
    assert result.exit_code == 0 and "0 malformed" in result.output, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 and all(is_copy_answer(r["output"], r["text"]) for r in rows)
    refused = CliRunner().invoke(app, args)  # free decoding into the constrained output
    assert refused.exit_code != 0 and "decoding" in refused.output + str(refused.exception)
    bad = CliRunner().invoke(app, [*args, "--decoding", "beam", "-o", str(tmp_path / "other.jsonl")])
    assert bad.exit_code != 0 and "unknown decoding" in bad.output + str(bad.exception)


def test_the_repetition_stop_does_not_cut_constrained_answers(tiny):
    """A valid answer that repeats a token block (a passage repeating itself) trips the loop rule, which
    cuts free decoding; constrained decoding closes its answers itself and keeps it whole."""
    _, tokenizer = tiny
    text = " ".join(["ha"] * 20)
    answer = json.dumps([" ".join(["ha"] * 16)])
    cap = len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1
    assert not is_copy_answer(scripted(tiny, answer, cap, "free", text), text)
    assert scripted(tiny, answer, cap, "constrained", text) == answer


@pytest.mark.slow
def test_smollm2_vocabulary_bytes_and_allowed_tokens():
    """The real SmolLM2 tokenizer (49,152 tokens): byte strings decode its encodings, and the allowed tokens
    of a few states equal a scan of the whole vocabulary."""
    from transformers import AutoTokenizer

    from rait import models

    cached = models.cache_dir() / "models" / models.EMBEDDED_CACHE_NAME
    if not (cached / "tokenizer_config.json").exists():
        pytest.skip("SmolLM2 is not converted in the rait cache")
    tokenizer = AutoTokenizer.from_pretrained(cached)
    vocab = TokenVocab(tokenizer, stop_token_ids(tokenizer))
    text = 'Apple said "iPhone" sold in 北京 and C:\\temp.'
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert b"".join(vocab.token_bytes[i] for i in ids).decode() == text
    c = PassageConstraint(text, vocab)
    for prefix in ('["', '["北', '["Apple said \\"', '["C:\\\\temp.", '):
        cursor = walk(c, prefix)
        scan = {t for t, data in enumerate(vocab.token_bytes) if data and c.advance(cursor, data) is not None}
        assert set(c.allowed(cursor).tolist()) - vocab.stop_ids == scan - vocab.stop_ids, prefix
