"""Greedy transformers inference: the ``hf`` backend (:class:`Predictor`).

A passage's prompt is the same for all of its types up to the question (optional RA-IT examples turn,
passage turn, acknowledgement), so :class:`Predictor` runs that prefix once, copies its KV cache to one
row per type question, and decodes all questions together, greedily. Token ids come only from
:func:`rait.chat.encode_turns`, exactly as in training. :meth:`Predictor.answer_naive` re-encodes the full
prompt for every type: the reference the fast path must match token for token.
"""

from __future__ import annotations

import functools
import inspect
from collections import Counter
from collections.abc import Iterator, Sequence

import torch

from rait.answers import Answer
from rait.chat import encode_system, encode_turns, ensure_chat_template, stop_token_ids
from rait.errors import RaitError
from rait.inference.answerer import DEFAULT_BATCH_SIZE, Answerer, PassageQuery, check_decoding
from rait.inference.confidence import SCORE_DIGITS, SCORE_RULE, ChoiceRecorder
from rait.inference.decoding import DRAFT_BUDGET, Decoder
from rait.inference.entities import scored_answer
from rait.inference.packing import pack_linears
from rait.inference.prefill import prefill, shared_start
from rait.inference.stopping import DEFAULT_MAX_NEW_TOKENS, Continuation
from rait.records import Record
from rait.templates import prompt_turns, question_turn

BRANCH_OPENINGS = ('["', "[")  # an answer's usual first tokens, drafted in the prompt forward


class Predictor(Answerer):
    """Greedy transformers inference with the passage prefix's KV cache shared by all its type questions
    (the prefix includes the tokens all the questions start with).

    ``batch_size`` is the largest number of type questions decoded together; several passages go in one
    batch when their types fit (prefixes left-padded), a passage with more types is split into chunks.
    A row stops at an end-of-turn token (:func:`rait.chat.stop_token_ids`), once it repeats itself
    (:func:`rait.inference.stopping.repeats_itself`, unless ``stop_repetition`` is off or decoding is
    constrained, which closes answers itself) or at ``max_new_tokens``;
    answers are :class:`rait.answers.Answer` strings that say which, with their mentions' confidence
    ``scores`` (recorded at the choice points of each row, :mod:`rait.inference.confidence`).
    ``decoding="constrained"`` allows only answers that are JSON lists of distinct passage substrings, closed
    before the cap (:mod:`rait.inference.constrained`); ``"constrained-words"`` also keeps strings from
    starting or ending inside a word; ``"free"``: the paper's unconstrained greedy decoding. ``draft_budget``
    and ``jump_forward`` (:class:`rait.inference.decoding.Decoder`) only save model calls: 0 and False
    decode one token per call.

    ``min_score``: where the caller keeps only mentions scored at least this (a threshold, under the score
    rule ``first``), an answer whose first choice point scores below it is cut there and answered ``[]``
    with finish reason ``dropped``: the mentions it would have written would all be dropped. None (the
    default, and what ``rait predict`` uses, as its files keep every score): every answer is decoded whole."""

    draft_budget: int = DRAFT_BUDGET
    jump_forward: bool = True
    min_score: float | None = None
    _start_cache: tuple[list[int], list] | None = None

    def __init__(
        self,
        model,
        tokenizer,
        lang: str = "en",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        system_prompt: str | None = "none",
        decoding: str = "free",
        stop_repetition: bool = True,
    ):
        if batch_size < 1 or max_new_tokens < 1:
            raise RaitError("batch_size and max_new_tokens must be at least 1")
        check_decoding(decoding, max_new_tokens)
        self.model = model.eval()
        self.tokenizer = ensure_chat_template(tokenizer)
        self.lang = lang
        self.system_prompt = system_prompt or "none"
        self.system_ids = tuple(encode_system(self.tokenizer, self.system_prompt))
        self.max_new_tokens = max_new_tokens
        self.stop_repetition = stop_repetition
        self.batch_size = batch_size
        self.decoding = decoding
        self.stop_ids = frozenset(stop_token_ids(self.tokenizer))
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.stop_ids)
        self.device = next(model.parameters()).device
        pack_linears(model)  # bf16 on a CPU: weights laid out once for the products (bit-identical)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._decoder, self._head = base.get_decoder(), base.get_output_embeddings()
        params = inspect.signature(type(self._decoder).forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def iter_answers(self, queries: Sequence[PassageQuery]) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(index, answers)`` for each passage, in input order, as its batch completes."""
        units: list[tuple[int, list[int], list[list[int]]]] = []  # (passage, prefix ids, question ids)
        for index, query in enumerate(queries):
            prefix, suffixes = self._token_ids(self.tokenizer, query)
            if not suffixes:
                units.append((index, prefix, []))
            for start in range(0, len(suffixes), self.batch_size):
                chunk = suffixes[start : start + self.batch_size]
                shared = _shared_start(chunk)  # e.g. "<|im_start|>user\nWhat describes": run once, as prefix
                units.append((index, prefix + chunk[0][:shared], [suffix[shared:] for suffix in chunk]))
        remaining = Counter(index for index, _, _ in units)
        pending: dict[int, list[str]] = {}
        next_index = 0
        for group in _group_units(units, self.batch_size):
            live = [unit for unit in group if unit[2]]
            outputs = iter(
                self._greedy(
                    [prefix for _, prefix, _ in live],
                    [row for row, (_, _, suffixes) in enumerate(live) for _ in suffixes],
                    [suffix for _, _, suffixes in live for suffix in suffixes],
                    [queries[index].text for index, _, suffixes in live for _ in suffixes],
                )
                if live
                else []
            )
            for index, _, suffixes in group:
                pending.setdefault(index, []).extend(self._decode(next(outputs)) for _ in suffixes)
                remaining[index] -= 1
            while next_index < len(queries) and remaining[next_index] == 0:
                yield next_index, pending.pop(next_index)
                next_index += 1

    def answer_naive(
        self, text: str, types: Sequence[str], examples: Sequence[Record] = (), lang: str | None = None
    ) -> list[str]:
        """Reference path: encode the whole prompt for each type, decode it alone (no reuse, no batching)."""
        lang = lang or self.lang
        answers = []
        for entity_type in types:
            turns = [*prompt_turns(text, examples, lang), question_turn(entity_type, lang)]
            ids = [*self.system_ids, *encode_turns(self.tokenizer, turns, add_generation_prompt=True)]
            answers.append(self._decode(self._greedy([[]], [0], [ids], [text])[0]))
        return answers

    def _constraint_rows(self, passages: Sequence[str]):
        """Per-row copy constraints for ``passages`` (one constraint object per distinct passage)."""
        from rait.inference.constrained import ConstrainedRows

        by_text = {text: self._copy_constraint(text) for text in dict.fromkeys(passages)}
        return ConstrainedRows([by_text[text] for text in passages])

    def _decode(self, ids: list[int]) -> Answer:
        reason, probs = getattr(ids, "finish_reason", "stop"), getattr(ids, "open_probs", None)
        if reason == "dropped":
            return Answer("[]", reason, [])
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return Answer(text, reason) if probs is None else scored_answer(text, reason, probs)

    @functools.cached_property
    def _token_bytes(self) -> list[bytes | None]:
        return self._token_vocab().token_bytes

    @functools.cached_property
    def _branches(self) -> tuple[int, ...]:
        """The first tokens drafted in the prompt forward: the tokenizer's single tokens for the usual
        openings of an answer, ``["`` and ``[`` (:func:`rait.inference.prefill.prefill`)."""
        found = (self._encode(opening) for opening in BRANCH_OPENINGS)
        return tuple(dict.fromkeys(ids[0] for ids in found if len(ids) == 1))

    def _start(self) -> tuple[list[int], list]:
        """The tokens every prompt in the predictor's language starts with (the system turn and the passage
        turn's opening) and their cache per layer, computed once (:func:`rait.inference.prefill.prefill`)."""
        if self._start_cache is None:
            from transformers import DynamicCache

            prompts = [self._token_ids(self.tokenizer, PassageQuery(text, ("x",)))[0] for text in ("a", "b")]
            head = shared_start(prompts)
            cache = DynamicCache(config=self.model.config)
            if head:
                ids = torch.tensor([head], device=self.device)
                positions = torch.arange(len(head), device=self.device)[None]
                self._forward(ids, torch.ones_like(ids), positions, cache, None)
            self._start_cache = (head, [(layer.keys, layer.values) for layer in cache.layers] if head else [])
        return self._start_cache

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _forward(self, ids, mask, positions, cache, select: torch.Tensor | None) -> torch.Tensor | None:
        """Run the model on ``ids`` (``mask``: the valid cache and fed slots) and return the scores at the
        flat positions ``select`` of ``ids`` (None: no scores). Only those positions go through the
        vocabulary projection, as one matrix product."""
        hidden = self._decoder(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kwarg: cache},
        ).last_hidden_state
        if select is None:
            return None
        return self._head(hidden.reshape(-1, hidden.shape[-1])[select])

    @torch.inference_mode()
    def _greedy(
        self,
        prefixes: list[list[int]],
        owner: list[int],
        suffixes: list[list[int]],
        passages: Sequence[str] | None = None,
    ) -> list[Continuation]:
        """Greedy continuations of ``prefixes[owner[r]] + suffixes[r]`` for every row ``r``, each with its
        finish reason and choice-point probabilities.

        The prompts run in one forward per length bucket, each prefix once
        (:func:`rait.inference.prefill.prefill`); decoding is :class:`rait.inference.decoding.Decoder`. In
        constrained decoding ``passages[r]`` is the passage row ``r``'s answer copies from."""
        from transformers import DynamicCache

        branches = self._branches if self.draft_budget else ()
        cache, mask, next_pos, logits = prefill(
            self._forward,
            lambda: DynamicCache(config=self.model.config),
            prefixes,
            owner,
            suffixes,
            self.pad_id,
            self.device,
            self.model.dtype,
            self._start(),
            branches,
        )
        guide = self._constraint_rows(passages) if self.decoding != "free" else None
        choices = ChoiceRecorder(self._choice_tokens(), len(suffixes))
        decoder = Decoder(
            self._forward,
            self.max_new_tokens,
            self.stop_ids,
            self.stop_repetition,
            guide,
            draft_budget=self.draft_budget,
            jump_forward=self.jump_forward,
            token_bytes=self._token_bytes,
            encode=self._encode,
            observe=choices.observe,
            drop=self._drop_rule(choices),
            mask_dtype=self.model.dtype,
        )
        prompts = [prefixes[o] + s for o, s in zip(owner, suffixes, strict=True)]
        outputs = decoder.run(logits, cache, mask, next_pos, prompts, passages, branches)
        reasons = [out.finish_reason for out in outputs]
        if guide is not None:  # answers that ended by looping: cut after their last complete string
            guide.rewrite(outputs, self._encode)
        return [Continuation(ids, reasons[row], choices.probs[row]) for row, ids in enumerate(outputs)]

    def _drop_rule(self, choices: ChoiceRecorder):
        """``Decoder``'s ``drop``: a row whose answer's score (``p_open`` at its first choice point, rounded
        as entities are) is below :attr:`min_score`; None where no row can be dropped."""
        floor = self.min_score
        if not floor or SCORE_RULE != "first":
            return None
        probs = choices.probs
        return lambda row: bool(probs[row]) and round(probs[row][0], SCORE_DIGITS) < floor


def _shared_start(seqs: list[list[int]]) -> int:
    """Length of the token prefix common to all ``seqs``, leaving at least one token in each."""
    limit = min(len(seq) for seq in seqs) - 1
    for position in range(limit):
        if any(seq[position] != seqs[0][position] for seq in seqs[1:]):
            return position
    return max(limit, 0)


def _group_units(units: list, batch_size: int) -> Iterator[list]:
    """Consecutive units whose question rows fit in one batch."""
    group: list = []
    rows = 0
    for unit in units:
        if group and rows + len(unit[2]) > batch_size:
            yield group
            group, rows = [], 0
        group.append(unit)
        rows += len(unit[2])
    if group:
        yield group
