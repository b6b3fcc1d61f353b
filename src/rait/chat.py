"""The one canonical way conversations become token ids, shared by training and inference.

Conventions (the same for every model):

* **Per-turn segments.** Each turn is rendered with the tokenizer's chat template *as if it stood alone*
  and tokenized as its own segment; a conversation's ids are the concatenation of its turns' segments,
  followed by the generation prompt (e.g. ``<|im_start|>assistant\\n``) when asked. Hence
  ``encode_turns(prefix) + encode_turns(rest, add_generation_prompt=True) ==
  encode_turns(prefix + rest, add_generation_prompt=True)``, which lets inference reuse a prefix's KV cache.
* **The system turn is a setting, no BOS.** Templates that inject a default system prompt when the
  conversation has none (SmolLM2: "You are a helpful AI assistant named SmolLM...", Qwen: "You are a helpful
  assistant.") or prepend a BOS token to the first message do not do so inside ``encode_turns``: a turn's
  rendering is taken as the difference between rendering an anchor conversation with and without it, which
  cancels anything the template puts at the start. The system turn comes separately from the
  ``system_prompt`` setting (:func:`encode_system`): ``"none"`` (no system turn), ``"default"`` (whatever
  the template renders before the first user turn when given no system message, e.g. Qwen's "You are a
  helpful assistant."; nothing for the ChatML fallback), or any other text (rendered as a system message).
  Training (:func:`encode_for_training`) and inference put exactly the same ids first.
* **Assistant turns** are tokenized as three pieces -- header (the generation prompt), content, and the
  end-of-turn tail -- so the content tokens in training are exactly what the model generates after the
  generation prompt at inference. The training loss covers the content and the first token of the tail
  when it is an end-of-turn/EOS token (``<|im_end|>`` for ChatML); everything else is masked.
* **ChatML fallback.** A tokenizer without a chat template (a base model) gets ChatML
  (``<|im_start|>role\\ncontent<|im_end|>\\n``). When ``<|im_end|>`` is not a single token of its
  vocabulary, the tokenizer's EOS token closes each turn instead, so that generation stops on one token;
  no tokens are added and embeddings are never resized.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rait.errors import RaitError
from rait.records import Turn

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + END + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_PLACEHOLDER = "\u0000RAIT-CONTENT\u0000"
SYSTEM_NONE = "none"
SYSTEM_DEFAULT = "default"
_ANCHOR_USER = "Hello."
_ANCHOR_ASSISTANT = "Hi."


def chatml_template(end_of_turn: str = "<|im_end|>") -> str:
    """A ChatML chat template whose turns end with ``end_of_turn``."""
    return _CHATML.replace("END", repr(end_of_turn))


def ensure_chat_template(tokenizer):
    """Give ``tokenizer`` a ChatML chat template if it has none (logged); also set a pad token if missing.

    Returns the same tokenizer, modified in place."""
    if not getattr(tokenizer, "chat_template", None):
        vocab = tokenizer.get_vocab()
        if "<|im_end|>" in vocab:
            end = "<|im_end|>"
        elif tokenizer.eos_token is not None:
            end = tokenizer.eos_token
        else:
            raise RaitError("the tokenizer has no chat template, no <|im_end|> token and no EOS token")
        tokenizer.chat_template = chatml_template(end)
        logger.info("tokenizer has no chat template; using ChatML with %s closing each turn", end)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True, slots=True)
class TurnFormat:
    """A chat template reduced to per-role text around the content, and the generation prompt."""

    user: tuple[str, str]
    assistant: tuple[str, str]
    generation_prompt: str


_FORMATS: dict[tuple, TurnFormat] = {}


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _suffix_after(full: str, prefix: str, what: str) -> str:
    if not full.startswith(prefix):
        raise RaitError(f"unsupported chat template: rendering a {what} changes the earlier turns' text")
    return full[len(prefix) :]


def turn_format(tokenizer) -> TurnFormat:
    """Derive (and cache) the per-role rendering of ``tokenizer``'s chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise RaitError("the tokenizer has no chat template (call rait.chat.ensure_chat_template first)")
    key = (tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token)
    if key in _FORMATS:
        return _FORMATS[key]
    user_anchor = [{"role": "user", "content": _ANCHOR_USER}]
    pair_anchor = [*user_anchor, {"role": "assistant", "content": _ANCHOR_ASSISTANT}]
    base_user, base_pair = _render(tokenizer, user_anchor), _render(tokenizer, pair_anchor)
    placeholder_user = {"role": "user", "content": _PLACEHOLDER}
    placeholder_assistant = {"role": "assistant", "content": _PLACEHOLDER}
    user = _suffix_after(_render(tokenizer, [*pair_anchor, placeholder_user]), base_pair, "user turn")
    assistant = _suffix_after(_render(tokenizer, [*user_anchor, placeholder_assistant]), base_user, "reply")
    generation = _suffix_after(_render(tokenizer, user_anchor, True), base_user, "generation prompt")
    parts = []
    for text, what in ((user, "user"), (assistant, "assistant")):
        if text.count(_PLACEHOLDER) != 1:
            raise RaitError(f"unsupported chat template: cannot locate the {what} content in its rendering")
        before, after = text.split(_PLACEHOLDER)
        parts.append((before, after))
    fmt = TurnFormat(user=parts[0], assistant=parts[1], generation_prompt=generation)
    _FORMATS[key] = fmt
    return fmt


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _turn_pieces(tokenizer, fmt: TurnFormat, turn: Turn) -> tuple[list[int], list[int], list[int]]:
    """(scaffolding ids before the content, content ids, scaffolding ids after) of one turn's segment."""
    if turn.role == "user":
        before, after = fmt.user
        return _ids(tokenizer, before + turn.content + after), [], []
    if turn.role != "assistant":
        raise RaitError(f"unsupported turn role {turn.role!r} (expected 'user' or 'assistant')")
    before, after = fmt.assistant
    gen = fmt.generation_prompt
    if gen and before.startswith(gen):
        head = _ids(tokenizer, gen) + _ids(tokenizer, before[len(gen) :])
    else:
        head = _ids(tokenizer, before)
    return head, _ids(tokenizer, turn.content), _ids(tokenizer, after)


def system_text(tokenizer, system_prompt: str | None) -> str:
    """The rendered system turn for a ``system_prompt`` setting (``"none"``/None, ``"default"`` or a text),
    without a leading BOS; ``""`` when there is none."""
    if system_prompt in (None, SYSTEM_NONE):
        return ""
    fmt = turn_format(tokenizer)
    user = {"role": "user", "content": _ANCHOR_USER}
    user_turn = fmt.user[0] + _ANCHOR_USER + fmt.user[1]
    messages = (
        [user] if system_prompt == SYSTEM_DEFAULT else [{"role": "system", "content": system_prompt}, user]
    )
    try:
        rendered = _render(tokenizer, messages)
    except Exception as exc:  # jinja2's TemplateError: e.g. "System role not supported"
        raise RaitError(f"the chat template cannot render a system prompt: {exc}") from None
    if not rendered.endswith(user_turn):
        raise RaitError("unsupported chat template: the system prompt changes how the user turn renders")
    text = rendered[: -len(user_turn)]
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and not user_turn.startswith(bos):  # SmolLM2's "BOS" is <|im_start|>
        text = text[len(bos) :]
    if system_prompt != SYSTEM_DEFAULT and system_prompt not in text:
        raise RaitError("the chat template ignores a system message; use system_prompt 'none' or 'default'")
    return text


def encode_system(tokenizer, system_prompt: str | None) -> list[int]:
    """Token ids of the system turn (:func:`system_text`), one segment; ``[]`` for none."""
    return _ids(tokenizer, system_text(tokenizer, system_prompt))


def encode_turns(tokenizer, turns: list[Turn], add_generation_prompt: bool = False) -> list[int]:
    """Token ids of ``turns``: the concatenation of each turn's own segment (+ the generation prompt)."""
    fmt = turn_format(tokenizer)
    ids: list[int] = []
    for turn in turns:
        head, content, tail = _turn_pieces(tokenizer, fmt, turn)
        ids += head + content + tail
    if add_generation_prompt:
        ids += _ids(tokenizer, fmt.generation_prompt)
    return ids


def stop_token_ids(tokenizer) -> list[int]:
    """Ids that end an assistant turn: the template's end-of-turn token (if a single token), then EOS."""
    ids: list[int] = []
    tail = _ids(tokenizer, turn_format(tokenizer).assistant[1])
    added = tokenizer.get_added_vocab().values()
    if tail and (tail[0] in tokenizer.all_special_ids or tail[0] in added):
        ids.append(tail[0])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_for_training(
    tokenizer, turns: list[Turn], max_length: int | None = None, system_prompt: str | None = None
) -> dict[str, list[int]]:
    """``input_ids`` (the system turn of ``system_prompt``, then :func:`encode_turns`) and ``labels``: token
    ids on assistant content and its end-of-turn token, ``-100`` on the system turn, user turns and template
    scaffolding. Truncated to ``max_length``."""
    fmt = turn_format(tokenizer)
    stops = set(stop_token_ids(tokenizer))
    input_ids: list[int] = encode_system(tokenizer, system_prompt)
    labels: list[int] = [IGNORE_INDEX] * len(input_ids)
    for turn in turns:
        head, content, tail = _turn_pieces(tokenizer, fmt, turn)
        input_ids += head + content + tail
        labels += [IGNORE_INDEX] * len(head) + content
        if turn.role == "assistant" and tail and tail[0] in stops:
            labels += [tail[0]] + [IGNORE_INDEX] * (len(tail) - 1)
        else:
            labels += [IGNORE_INDEX] * len(tail)
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return {"input_ids": input_ids, "labels": labels}
