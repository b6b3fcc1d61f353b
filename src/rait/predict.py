"""Inference: answer UniversalNER-style type questions about passages, and write benchmark predictions.

A passage's prompt is the same for all of its types up to the question (optional RA-IT examples turn,
passage turn, acknowledgement), so :class:`Predictor` runs that prefix once, copies its KV cache to one
row per type question, and decodes all questions together, greedily. Token ids come only from
:func:`rait.chat.encode_turns`, exactly as in training. :meth:`Predictor.answer_naive` re-encodes the full
prompt for every type: the reference the fast path must match token for token.

Answers are parsed with :func:`rait.evaluation.parse_answer_items` (a malformed answer counts as empty and is
counted) and each mention is located in the passage: **all** its occurrences are returned with character
offsets; a mention not found verbatim is kept with ``start``/``end`` ``None`` and ``found`` ``False``.
"""

from __future__ import annotations

import inspect
import logging
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rait.chat import encode_system, encode_turns, ensure_chat_template, stop_token_ids
from rait.errors import DataError, RaitError
from rait.evaluation import parse_answer_items
from rait.fileio import JsonlAppender, check_output_file, read_json, write_json
from rait.formats import detect_lang
from rait.locks import output_lock
from rait.records import QueryPrediction, Record
from rait.stopping import (
    DEFAULT_MAX_NEW_TOKENS,
    Answer,
    Continuation,
    finish_reason,
    loop_end,
    repeats_itself,
)
from rait.templates import prompt_turns, question_turn

EXAMPLE_MODES = ("none", "out-domain", "in-domain")
DEFAULT_MAX_CHUNK_TOKENS = 1024
BACKENDS = ("hf", "vllm")
DECODINGS = ("free", "constrained")


def _check_decoding(decoding: str) -> None:
    if decoding not in DECODINGS:
        raise RaitError(f"unknown decoding {decoding!r}; choose one of {', '.join(DECODINGS)}")


logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PassageQuery:
    """One passage to question: its entity types, optional in-context examples, template language
    (``None``: the predictor's)."""

    text: str
    types: tuple[str, ...]
    examples: tuple[Record, ...] = ()
    lang: str | None = None


class Answerer(ABC):
    """Base of the inference backends: subclasses implement ``iter_answers``; the rest builds on it."""

    lang: str
    system_ids: tuple[int, ...] = ()  # the system turn (rait.chat.encode_system) every prompt starts with

    @abstractmethod
    def iter_answers(self, queries: Sequence[PassageQuery]) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(index, raw answers, one per type)`` for every query, in input order."""

    def answer_many(self, queries: Sequence[PassageQuery]) -> list[list[str]]:
        """Raw answers for each passage, one per type, in order."""
        answers: list[list[str]] = [[] for _ in queries]
        for index, passage_answers in self.iter_answers(queries):
            answers[index] = passage_answers
        return answers

    def answer(
        self, text: str, types: Sequence[str], examples: Sequence[Record] = (), lang: str | None = None
    ) -> list[str]:
        """Raw answers (decoded model output) to each type's question about ``text``."""
        return self.answer_many([PassageQuery(text, tuple(types), tuple(examples), lang)])[0]

    def _token_ids(self, tokenizer, query: PassageQuery) -> tuple[list[int], list[list[int]]]:
        lang = query.lang or self.lang
        prefix = [*self.system_ids, *encode_turns(tokenizer, prompt_turns(query.text, query.examples, lang))]
        suffixes = [
            encode_turns(tokenizer, [question_turn(t, lang)], add_generation_prompt=True) for t in query.types
        ]
        return prefix, suffixes


class Predictor(Answerer):
    """Greedy transformers inference with the passage prefix's KV cache shared by all its type questions
    (the prefix includes the tokens all the questions start with).

    ``batch_size`` is the largest number of type questions decoded together; several passages go in one
    batch when their types fit (prefixes left-padded), a passage with more types is split into chunks.
    A row stops at an end-of-turn token (:func:`rait.chat.stop_token_ids`), once it repeats itself
    (:func:`rait.stopping.repeats_itself`, unless ``stop_repetition`` is off or decoding is constrained, which
    closes answers itself) or at ``max_new_tokens``;
    answers are :class:`rait.stopping.Answer` strings that say which. ``decoding="constrained"`` allows only
    answers that are JSON lists of distinct passage substrings, closed before the cap
    (:mod:`rait.constrained`); ``"free"``: the paper's unconstrained greedy decoding."""

    def __init__(
        self,
        model,
        tokenizer,
        lang: str = "en",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = 128,
        system_prompt: str | None = "none",
        decoding: str = "free",
        stop_repetition: bool = True,
    ):
        if batch_size < 1 or max_new_tokens < 1:
            raise RaitError("batch_size and max_new_tokens must be at least 1")
        _check_decoding(decoding)
        if decoding == "constrained" and max_new_tokens < 2:
            raise RaitError("constrained decoding needs max_new_tokens of at least 2 (the answer '[]')")
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
        self._vocab = None  # rait.constrained.TokenVocab, built on first constrained use
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.stop_ids)
        self.device = next(model.parameters()).device
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        params = inspect.signature(type(base).forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
        if head is not None and not getattr(head, "_rait_contiguous_input", False):
            head.register_forward_pre_hook(_contiguous_input)
            head._rait_contiguous_input = True

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
        from rait.constrained import ConstrainedRows, PassageConstraint, TokenVocab

        if self._vocab is None:
            self._vocab = TokenVocab(self.tokenizer, self.stop_ids)
        by_text = {text: PassageConstraint(text, self._vocab) for text in dict.fromkeys(passages)}
        return ConstrainedRows([by_text[text] for text in passages])

    def _decode(self, ids: list[int]) -> Answer:
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return Answer(text, getattr(ids, "finish_reason", "stop"))

    def _forward(self, ids, mask, positions, cache) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kwarg: cache},
        )
        return out.logits[:, -1]

    @torch.inference_mode()
    def _greedy(
        self,
        prefixes: list[list[int]],
        owner: list[int],
        suffixes: list[list[int]],
        passages: Sequence[str] | None = None,
    ) -> list[Continuation]:
        """Greedy continuations of ``prefixes[owner[r]] + suffixes[r]`` for every row ``r``, each with its
        finish reason.

        Prefixes are left-padded and run once; their cache is copied to the rows. Question suffixes are
        left-padded *after* the prefix: pad slots are masked out and position ids skip them, so every row
        sees exactly the positions and context it would see alone. In constrained decoding ``passages[r]``
        is the passage row ``r``'s answer copies from."""
        from transformers import DynamicCache

        dev = self.device
        cache = DynamicCache(config=self.model.config)
        rows = len(suffixes)
        width = max(len(p) for p in prefixes)
        if width:
            ids, pmask = _left_pad(prefixes, width, self.pad_id, dev)
            self._forward(ids, pmask, (pmask.cumsum(-1) - 1).clamp(min=0), cache)
            index = torch.tensor(owner, device=dev)
            if owner != list(range(len(prefixes))):
                cache.reorder_cache(index)
            pmask = pmask[index]
        else:
            pmask = torch.zeros((rows, 0), dtype=torch.long, device=dev)
        plen = pmask.sum(-1)
        ids, smask = _left_pad(suffixes, max(len(s) for s in suffixes), self.pad_id, dev)
        positions = (plen[:, None] + smask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([pmask, smask], dim=1)
        logits = self._forward(ids, mask, positions, cache)
        next_pos = positions[:, -1] + 1
        outputs: list[list[int]] = [[] for _ in range(rows)]
        active = list(range(rows))  # original row of each batch row
        finished: set[int] = set()
        guide = self._constraint_rows(passages) if self.decoding == "constrained" else None
        looped: set[int] = set()
        for step in range(self.max_new_tokens):
            tokens = logits.argmax(-1)
            if guide is not None:
                tokens = guide.select(logits, tokens, active, self.max_new_tokens - step)
            for batch_row, token in enumerate(tokens.tolist()):
                row = active[batch_row]
                if row in finished:
                    continue
                if token in self.stop_ids:
                    finished.add(row)
                else:
                    outputs[row].append(token)
                    if self.stop_repetition and guide is None and repeats_itself(outputs[row]):
                        finished.add(row)
                        looped.add(row)
            if len(finished) == rows or step == self.max_new_tokens - 1:
                break
            done_here = sum(1 for row in active if row in finished)
            if done_here * 4 >= len(active):  # drop finished rows once they are a quarter of the batch
                keep = [i for i, row in enumerate(active) if row not in finished]
                keep_index = torch.tensor(keep, device=dev)
                cache.batch_select_indices(keep_index)
                tokens, mask, next_pos = tokens[keep_index], mask[keep_index], next_pos[keep_index]
                active = [active[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            logits = self._forward(tokens[:, None], mask, next_pos[:, None], cache)
            next_pos = next_pos + 1
        if guide is not None:  # answers that ended by looping: cut after their last complete string
            guide.rewrite(outputs, lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return [
            Continuation(ids, "repetition" if row in looped else "stop" if row in finished else "length")
            for row, ids in enumerate(outputs)
        ]


def _contiguous_input(module, args):
    """Forward pre-hook of the vocabulary projection. ``logits_to_keep=1`` hands it a strided view of the last
    position; a linear layer given a strided 3-D input multiplies through a batched matmul over one copy of
    the weight per row (on CPU in bf16, a third of a passage's time: [26, 576, 49152] copied), a contiguous
    input through one matrix product."""
    return tuple(a.contiguous() if torch.is_tensor(a) else a for a in args)


def _left_pad(seqs: list[list[int]], width: int, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


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


class VllmPredictor(Answerer):
    """The same prompts (token ids from :func:`rait.chat.encode_turns`) decoded greedily by vLLM, with its
    automatic prefix caching sharing each passage's prefix across its type questions. Needs a GPU and
    ``pip install 'rait[gpu]'``. ``model``: a model directory/Hub id or a LoRA adapter directory.
    ``decoding="constrained"`` applies the copy constraint through a vLLM logits processor
    (:mod:`rait.constrained_vllm`, vLLM's V1 ``AdapterLogitsProcessor`` interface)."""

    def __init__(
        self,
        model: str | None = None,
        *,
        adapter: str | None = None,
        lang: str = "en",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        system_prompt: str | None = "none",
        decoding: str = "free",
        stop_repetition: bool = True,
        **engine_kwargs,
    ):
        _check_decoding(decoding)
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise RaitError("the vllm backend needs vLLM and a GPU: pip install 'rait[gpu]'") from None
        if decoding == "constrained":
            try:
                from rait.constrained_vllm import CopyConstraintLogitsProcessor
            except ImportError as exc:
                raise RaitError(
                    f"constrained decoding needs vLLM's V1 logits-processor interface ({exc}); "
                    "use --decoding free or the hf backend"
                ) from None
            engine_kwargs = {"logits_processors": [CopyConstraintLogitsProcessor], **engine_kwargs}
        from rait.models import adapter_base_model, is_adapter_dir, resolve_model_path

        if adapter is None and is_adapter_dir(model):
            adapter, model = model, adapter_base_model(model)
        if adapter is not None:
            rank = int(read_json(Path(adapter) / "adapter_config.json").get("r", 16))
            engine_kwargs = {"enable_lora": True, "max_lora_rank": max(16, rank), **engine_kwargs}
        self.llm = vllm.LLM(model=resolve_model_path(model), enable_prefix_caching=True, **engine_kwargs)
        self.tokenizer = ensure_chat_template(self.llm.get_tokenizer())
        self.lang = lang
        self.max_new_tokens = max_new_tokens
        self.stop_repetition = stop_repetition
        self.system_prompt = system_prompt or "none"
        self.system_ids = tuple(encode_system(self.tokenizer, self.system_prompt))
        self.decoding = decoding
        self._vocab = None  # rait.constrained.TokenVocab, built on first constrained answer
        self.params = vllm.SamplingParams(
            temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=stop_token_ids(self.tokenizer)
        )
        self.lora = LoRARequest("rait-adapter", 1, str(adapter)) if adapter is not None else None

    def _answer(self, completion) -> Answer:
        """A vLLM completion as an :class:`Answer`; a row that looped is cut where the transformers path
        stops it (:func:`rait.stopping.loop_end`), so both backends give the same answers."""
        ids = list(completion.token_ids)
        end = loop_end(ids) if self.stop_repetition and self.decoding == "free" else None
        if end is not None:
            return Answer(self.tokenizer.decode(ids[:end], skip_special_tokens=True).strip(), "repetition")
        return Answer(completion.text.strip(), "length" if completion.finish_reason == "length" else "stop")

    def iter_answers(self, queries: Sequence[PassageQuery]) -> Iterator[tuple[int, list[str]]]:
        prompts, owners, params = [], [], []
        for index, query in enumerate(queries):
            prefix, suffixes = self._token_ids(self.tokenizer, query)
            prompts += [{"prompt_token_ids": prefix + suffix} for suffix in suffixes]
            owners += [index] * len(suffixes)
            if self.decoding == "constrained":  # the logits processor reads the passage from extra_args
                for _ in suffixes:
                    params.append(self.params.clone())
                    params[-1].extra_args = {"rait_passage": query.text}
        outputs = (
            self.llm.generate(prompts, params or self.params, lora_request=self.lora, use_tqdm=False)
            if prompts
            else []
        )
        answers: list[list[str]] = [[] for _ in queries]
        for index, output in zip(owners, outputs, strict=True):
            answer = self._answer(output.outputs[0])
            if self.decoding == "constrained":  # an answer that ended by looping is cut and closed
                text = self._constraint(queries[index].text).finish(answer.encode()).decode()
                answer = Answer(text, answer.finish_reason)
            answers[index].append(answer)
        yield from enumerate(answers)

    def _constraint(self, text: str):
        from rait.constrained import PassageConstraint, TokenVocab

        if self._vocab is None:
            self._vocab = TokenVocab(self.tokenizer, stop_token_ids(self.tokenizer))
        return PassageConstraint(text, self._vocab)


def load_predictor(
    model: str | None = None,
    *,
    adapter: str | None = None,
    backend: str = "hf",
    lang: str = "en",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 128,
    device: str | None = None,
    precision: str = "auto",
    system_prompt: str | None = None,
    decoding: str = "free",
    stop_repetition: bool = True,
) -> Predictor | VllmPredictor:
    """A predictor (``hf`` or ``vllm`` backend) for a model name, dir or Hub id, or a LoRA adapter dir;
    ``decoding``: ``free`` or ``constrained`` (:mod:`rait.constrained`).

    ``precision`` (``hf``): ``auto``, ``fp32`` or ``bf16`` (see :mod:`rait.precision`). ``system_prompt``
    (``none``, ``default`` or a text; see :mod:`rait.chat`): None uses the one the adapter or model was
    trained with (its ``rait_train_config.json``), else ``none``. ``stop_repetition``: end a row once it
    repeats itself (:func:`rait.stopping.repeats_itself`)."""
    from rait.models import trained_system_prompt

    _check_decoding(decoding)
    if system_prompt is None:
        system_prompt = trained_system_prompt(adapter, model) or "none"
    if backend == "vllm":
        return VllmPredictor(
            model,
            adapter=adapter,
            lang=lang,
            max_new_tokens=max_new_tokens,
            system_prompt=system_prompt,
            decoding=decoding,
            stop_repetition=stop_repetition,
        )
    if backend != "hf":
        raise RaitError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    from rait.models import default_device, load_model
    from rait.precision import precision_dtype, resolve_precision

    device = device or default_device()
    resolved = resolve_precision(precision, device)
    loaded, tokenizer = load_model(model, adapter=adapter, device=device, dtype=precision_dtype(resolved))
    logger.info("inference precision %s (%s on %s)", resolved, precision, device)
    return Predictor(
        loaded,
        tokenizer,
        lang=lang,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        system_prompt=system_prompt,
        decoding=decoding,
        stop_repetition=stop_repetition,
    )


# ----------------------------------------------------------------------------- answers -> located entities


def answer_mentions(answer: str) -> tuple[list[str], bool]:
    """The mention strings of one answer as the model wrote them (de-duplicated, first-seen order) and
    whether it parsed (:func:`rait.evaluation.parse_answer_items`); a malformed answer gives ``[]``."""
    items = parse_answer_items(answer)
    if items is None:
        return [], False
    return list(dict.fromkeys(item for item in items if item.strip())), True


_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def _is_word_char(char: str) -> bool:
    return char.isalnum() and not _CJK_CHAR.match(char)


def _occurrences(haystack: str, needle: str) -> list[tuple[int, int]]:
    spans, start = [], haystack.find(needle)
    while start != -1:
        spans.append((start, start + len(needle)))
        start = haystack.find(needle, start + len(needle))
    return spans


def locate(text: str, mention: str) -> list[tuple[int, int]]:
    """Character spans of **all** non-overlapping occurrences of ``mention`` in ``text``, left to right.

    Occurrences that do not cut through a word (English letters/digits on both sides) are preferred; when
    there are none, any verbatim occurrence; then case-insensitive ones. ``[]`` when not found."""
    if not mention:
        return []

    def whole_words(spans):
        return [
            (s, e)
            for s, e in spans
            if not (s > 0 and _is_word_char(text[s - 1]) and _is_word_char(text[s]))
            and not (e < len(text) and _is_word_char(text[e]) and _is_word_char(text[e - 1]))
        ]

    exact = _occurrences(text, mention)
    if exact:
        return whole_words(exact) or exact
    lowered, needle = text.lower(), mention.lower()
    if len(lowered) == len(text) and len(needle) == len(mention):
        folded = _occurrences(lowered, needle)
        return whole_words(folded) or folded
    return []


def located_entities(text: str, entity_type: str, mentions: Iterable[str]) -> list[dict]:
    """Entities ``{"text", "type", "start", "end", "found"}`` for one type's mentions: one per occurrence
    (``text`` is the passage's own characters); an occurrence inside a longer mention of the same type is
    dropped; a mention not in the passage is kept once with ``start``/``end`` ``None``, ``found`` False."""
    spans: list[tuple[int, int]] = []
    missing: list[str] = []
    for mention in mentions:
        found = locate(text, mention)
        spans.extend(found)
        if not found:
            missing.append(mention)
    kept = sorted(
        {(s, e) for s, e in spans if not any(s2 <= s and e <= e2 and (s2, e2) != (s, e) for s2, e2 in spans)}
    )
    entities = [
        {"text": text[s:e], "type": entity_type, "start": s, "end": e, "found": True} for s, e in kept
    ]
    entities += [
        {"text": m, "type": entity_type, "start": None, "end": None, "found": False} for m in missing
    ]
    return entities


def entities_from_answers(text: str, types: Sequence[str], answers: Sequence[str]) -> tuple[list[dict], int]:
    """All located entities of a passage (found ones by position, then not-found ones) and the number of
    malformed answers among ``answers``."""
    entities: list[dict] = []
    malformed = 0
    for entity_type, answer in zip(types, answers, strict=True):
        mentions, ok = answer_mentions(answer)
        malformed += not ok
        entities += located_entities(text, entity_type, mentions)
    entities.sort(key=lambda e: (not e["found"], e["start"] or 0, -(e["end"] or 0)))
    return entities, malformed


# ----------------------------------------------------------------------------- prediction jobs

ExampleSource = Callable[[list[Record]], list[list[Record]]]
"""Given passages, the in-context examples for each (e.g. a :class:`Retriever`)."""


@dataclass(slots=True)
class Retriever:
    """Examples for passages from an :class:`rait.retrieval.ExamplePool`: nearest neighbours, filtered by
    BM25 score against the passage when ``bm25_threshold`` is set (the paper's out-domain setting);
    ``None`` keeps plain nearest neighbours (in-domain). ``allow_identical``: pool passages with exactly
    the passage's text may be examples (the reference's behaviour; rait excludes them by default)."""

    pool: object
    k: int = 2
    bm25_threshold: float | None = None
    seed: int = 42
    allow_identical: bool = False

    def __call__(self, records: list[Record]) -> list[list[Record]]:
        texts = [r.text for r in records]
        options = {"k": self.k, "seed": self.seed, "exclude_identical": not self.allow_identical}
        if self.bm25_threshold is None:
            return self.pool.retrieve(texts, strategy="nn", **options)
        return self.pool.retrieve(texts, strategy="nn_bm25", bm25_threshold=self.bm25_threshold, **options)


@dataclass(slots=True)
class PredictStats:
    """What one prediction run did: passages in the job, already complete before it (resumed), predicted
    now; (passage, type) queries written now, malformed answers among them, answers that hit the
    ``max_new_tokens`` cap and answers stopped in a repetition loop (:mod:`rait.stopping`), passages given
    examples, passages split into chunks (longer than the context or ``max_chunk_tokens``)."""

    n_passages: int = 0
    n_resumed: int = 0
    n_predicted: int = 0
    n_queries: int = 0
    n_malformed: int = 0
    n_capped: int = 0
    n_repetition: int = 0
    n_with_examples: int = 0
    n_chunked: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _progress_bar(enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def query_rows(record: Record, types: Sequence[str], answers: Sequence[str]) -> list[QueryPrediction]:
    """One :class:`QueryPrediction` per type: gold mentions (and spans when the gold has offsets), the raw
    answer, and the spans of the predicted mentions found in the passage."""
    rows = []
    for entity_type, answer in zip(types, answers, strict=True):
        gold_mentions = [m for m in record.mentions if m.type == entity_type]
        gold_spans = (
            [[m.start, m.end] for m in gold_mentions]
            if all(m.start is not None and m.end is not None for m in gold_mentions)
            else None
        )
        found = located_entities(record.text, entity_type, answer_mentions(answer)[0])
        rows.append(
            QueryPrediction(
                benchmark=record.source,
                record_id=record.id,
                type=entity_type,
                gold=record.answers(entity_type),
                output=answer,
                text=record.text,
                gold_spans=gold_spans,
                predicted_spans=[[e["start"], e["end"]] for e in found if e["found"]],
                finish_reason=finish_reason(answer),
            )
        )
    return rows


def predict_records(
    records: Sequence[Record],
    answerer: Answerer,
    output: str | Path,
    *,
    examples: ExampleSource | None = None,
    lang: str | None = None,
    chunk_size: int = 64,
    max_chunk_tokens: int | None = DEFAULT_MAX_CHUNK_TOKENS,
    progress: bool = True,
) -> PredictStats:
    """Answer every (record, type) query and append :class:`QueryPrediction` rows to ``output`` (jsonl).

    Resumable: rows are flushed as each passage completes, and queries already in ``output`` (by benchmark
    = ``record.source``, record id, type) are skipped, so after an interruption a re-run predicts only the
    missing passages. Types are ``record.query_types()``; ``lang`` ``None`` detects each passage's language.
    Passages go to ``examples`` (retrieval) and the model ``chunk_size`` at a time. A passage longer than
    the model's context or ``max_chunk_tokens`` is answered in sentence chunks (:mod:`rait.chunking`): its
    ``output`` is then the JSON list of the mentions of all chunks."""
    from rait.chunking import with_chunking

    answerer = with_chunking(answerer, max_chunk_tokens)
    chunked_before = getattr(answerer, "n_chunked", 0)
    seen: set[tuple[str, str]] = set()
    for record in records:
        key = (record.source, record.id)
        if key in seen:
            raise DataError(
                output, f"duplicate record id {record.id!r} in benchmark {record.source!r}", field="id"
            )
        seen.add(key)
    stats = PredictStats(n_passages=len(records))
    with output_lock(output, what="predictions file"), JsonlAppender(output) as appender:
        done = {(row.get("benchmark"), row.get("record_id"), row.get("type")) for row in appender.existing()}
        todo: list[tuple[Record, list[str]]] = []
        for record in records:
            types = record.query_types()
            missing = [t for t in types if (record.source, record.id, t) not in done]
            if missing:
                todo.append((record, missing))
            else:
                stats.n_resumed += 1
        with _progress_bar(progress) as bar:
            task = bar.add_task("predicting", total=len(records), completed=stats.n_resumed)
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start : start + chunk_size]
                chunk_examples = examples([r for r, _ in chunk]) if examples else [[] for _ in chunk]
                queries = [
                    PassageQuery(r.text, tuple(types), tuple(ex), lang or detect_lang(r.text))
                    for (r, types), ex in zip(chunk, chunk_examples, strict=True)
                ]
                for index, answers in answerer.iter_answers(queries):
                    record, types = chunk[index]
                    for row in query_rows(record, types, answers):
                        appender.append(row.to_dict())
                    stats.n_predicted += 1
                    stats.n_queries += len(types)
                    stats.n_malformed += sum(not answer_mentions(a)[1] for a in answers)
                    stats.n_capped += sum(finish_reason(a) == "length" for a in answers)
                    stats.n_repetition += sum(finish_reason(a) == "repetition" for a in answers)
                    stats.n_with_examples += bool(chunk_examples[index])
                    bar.advance(task)
    stats.n_chunked = getattr(answerer, "n_chunked", 0) - chunked_before
    return stats


@dataclass(slots=True)
class PredictConfig:
    """A ``rait predict`` job. Passages come from registry ``benchmarks`` (test split, at most
    ``max_examples`` sampled with ``seed``) and/or an ``input`` file read by
    :func:`rait.file_benchmarks.load_file_benchmark` (a labelled file in any format is a benchmark named
    ``name``, its codes renamed by ``label_map``; a file of plain lines is passages), whose types ``types``
    sets or overrides; ``columns``/``tag_names``: layout options of :func:`rait.formats.load_records`.
    ``examples``: ``none``; ``out-domain`` (k nearest from the training ``pool`` -- a file or a registered
    training source -- kept when their BM25 score reaches ``bm25_threshold``); ``in-domain`` (k nearest
    from ``pool_size`` labelled examples of each benchmark's train split, or of the ``pool`` file).
    ``stopwords``: removed before BM25 (:func:`rait.retrieval.load_stopwords`). ``allow_identical_examples``:
    pool passages identical to the test passage may be examples, as in the reference (leaks gold)."""

    output: Path
    model: str | None = None
    adapter: str | None = None
    benchmarks: list[str] = field(default_factory=list)
    input: Path | None = None
    input_format: str | None = None
    types: list[str] | None = None
    name: str | None = None
    label_map: str | None = None
    columns: tuple[int, int] | None = None
    tag_names: list[str] | None = None
    max_examples: int | None = 2000
    seed: int = 42
    examples: str = "none"
    pool: str | None = None
    pool_size: int | None = None
    k: int = 2
    bm25_threshold: float = 20.0
    stopwords: str | None = None
    allow_identical_examples: bool = False
    embedder: str | None = None
    lang: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    stop_repetition: bool = True
    batch_size: int = 128
    backend: str = "hf"
    precision: str = "auto"
    max_chunk_tokens: int | None = DEFAULT_MAX_CHUNK_TOKENS
    system_prompt: str | None = None  # None: the one the model was trained with (else "none")
    decoding: str = "free"

    def settings(self) -> dict:
        """What determines the predictions (checked when resuming into an existing output); the precision
        as resolved on this machine, the system prompt as resolved from the model. Options the job ignores
        are stored as None, so that they never block a resume."""
        from rait.models import default_device, trained_system_prompt
        from rait.precision import resolve_precision

        keep = ("model", "adapter", "examples", "pool", "pool_size", "k", "bm25_threshold", "embedder")
        data = {name: getattr(self, name) for name in keep}
        if self.examples == "none":
            data |= dict.fromkeys(("pool", "pool_size", "k", "bm25_threshold", "embedder"))
        elif self.examples == "in-domain":
            data["bm25_threshold"] = None
        data |= {"lang": self.lang, "max_new_tokens": self.max_new_tokens, "backend": self.backend}
        data["precision"] = resolve_precision(self.precision, default_device())
        data["max_chunk_tokens"] = self.max_chunk_tokens
        data["decoding"] = self.decoding
        data["stop_repetition"] = self.stop_repetition
        data["system_prompt"] = (
            self.system_prompt or trained_system_prompt(self.adapter, self.model) or "none"
        )
        data |= {"seed": self.seed, "max_examples": self.max_examples if self.benchmarks else None}
        data |= {"input": self.input, "input_format": self.input_format, "types": self.types}
        data |= {"label_map": self.label_map, "columns": list(self.columns) if self.columns else None}
        data |= {"tag_names": self.tag_names}
        if self.stopwords is not None:  # recorded only when set, so older outputs still resume
            data["stopwords"] = self.stopwords
        if self.allow_identical_examples:
            data["allow_identical_examples"] = True
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def meta_path(output: str | Path) -> Path:
    """``<stem>.meta.json`` beside a predictions file: the settings it was written with."""
    output = Path(output)
    return output.with_name(f"{output.stem}.meta.json")


def _check_settings(config: PredictConfig) -> None:
    """Refuse to resume into an output written with other settings; record them for a new output."""
    path = meta_path(config.output)
    settings = config.settings()
    if path.exists() and config.output.exists():
        # older outputs: fp32 on CPU, no system turn, no repetition stop; other settings an older meta file
        # lacks are not checked
        old = {
            "precision": "fp32",
            "system_prompt": "none",
            "stop_repetition": False,
            **read_json(path).get("settings", {}),
        }
        changed = sorted(k for k in settings.keys() & old.keys() if old[k] != settings[k])
        if changed:
            name = changed[0]
            raise RaitError(
                f"{config.output} was written with other settings ({name}: {old.get(name)!r}, now "
                f"{settings.get(name)!r}); use another --output or --overwrite"
            )
    write_json(path, {"settings": settings})


def _validate(config: PredictConfig) -> None:
    """Check every option before anything is loaded."""
    from rait.file_benchmarks import TEXT_FORMAT
    from rait.formats import LOAD_FORMATS

    if not config.benchmarks and config.input is None:
        raise RaitError("nothing to predict: give --benchmark and/or --input")
    if config.input is None:
        for option in ("types", "name", "label_map", "input_format", "columns", "tag_names"):
            if getattr(config, option) is not None:
                flag = "--" + option.replace("_", "-")
                raise RaitError(f"{flag} applies to --input files only (a registered benchmark has its own)")
    formats = (*LOAD_FORMATS, TEXT_FORMAT)
    if config.input_format is not None and config.input_format not in formats:
        raise RaitError(f"unknown --input-format {config.input_format!r}; choose one of {', '.join(formats)}")
    if config.lang not in (None, "en", "zh"):
        raise RaitError(f"unknown --lang {config.lang!r}; choose en or zh")
    if config.backend not in BACKENDS:
        raise RaitError(f"unknown --backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")
    if config.max_examples is not None and config.max_examples < 0:
        raise RaitError(f"--max-examples must be 0 (all) or more, got {config.max_examples}")
    if config.pool_size is not None and config.pool_size < 1:
        raise RaitError(f"--pool-size must be at least 1, got {config.pool_size}")
    if config.max_new_tokens < 1 or config.batch_size < 1:
        raise RaitError("--max-new-tokens and --batch-size must be at least 1")
    if config.types is not None and not config.types:
        raise RaitError("--types is empty")
    if config.examples not in EXAMPLE_MODES:
        raise RaitError(f"unknown --examples {config.examples!r}; choose one of {', '.join(EXAMPLE_MODES)}")
    if config.examples == "out-domain" and not config.pool:
        raise RaitError(
            "--examples out-domain needs --pool (a training file or a registered training source)"
        )
    if config.examples == "in-domain" and config.input is not None and not config.pool:
        raise RaitError("--examples in-domain with --input needs --pool (labelled examples of that domain)")
    if config.k < 1 and config.examples != "none":
        raise RaitError(f"-k must be at least 1 with --examples {config.examples}")
    _check_decoding(config.decoding)


def run_predict(
    config: PredictConfig,
    *,
    progress: bool = True,
    answerer: Answerer | None = None,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> PredictStats:
    """Run a prediction job (see :class:`PredictConfig`), resuming into ``config.output`` if it exists.

    ``answerer`` replaces the model the config names (tests, or a predictor already loaded); ``log`` gets
    a line saying how an input file is read (benchmark name, label map, types); ``overwrite`` starts
    ``config.output`` over instead of resuming into it."""
    from rait.benchmarks import get_spec, load_benchmark
    from rait.file_benchmarks import load_file_benchmark

    _validate(config)
    check_output_file(config.output)
    jobs: list[tuple[list[Record], str | None, str | None]] = []  # (records, lang, benchmark name)
    for name in config.benchmarks:
        spec = get_spec(name)
        records = load_benchmark(spec.name, "test", max_examples=config.max_examples, seed=config.seed)
        jobs.append((records, config.lang or spec.lang, spec.name))
    if config.input is not None:
        records, info = load_file_benchmark(
            config.input,
            config.input_format,
            name=config.name,
            label_map=config.label_map,
            types=config.types,
            lang=config.lang,
            columns=config.columns,
            tag_names=config.tag_names,
        )
        if log is not None:
            what = f"{len(records)} passages of {config.input} ({info.format})"
            if info.labelled:
                mapped = f"label map {info.label_map}" if info.label_map else "labels as in the file"
                what += f" as benchmark {info.name!r}, {mapped}, types: {', '.join(records[0].query_types())}"
            log(what)
        jobs.append((records, config.lang, None))
    with output_lock(config.output, what="predictions file"):
        if overwrite:
            config.output.unlink(missing_ok=True)
            meta_path(config.output).unlink(missing_ok=True)
        _check_settings(config)
        return _predict_jobs(config, jobs, progress, answerer)


def _predict_jobs(
    config: PredictConfig,
    jobs: list[tuple[list[Record], str | None, str | None]],
    progress: bool,
    answerer: Answerer | None,
) -> PredictStats:
    from rait.embed import get_embedder
    from rait.retrieval import ExamplePool

    answerer = answerer or load_predictor(
        config.model,
        adapter=config.adapter,
        backend=config.backend,
        lang=config.lang or "en",
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        precision=config.precision,
        system_prompt=config.system_prompt,
        decoding=config.decoding,
        stop_repetition=config.stop_repetition,
    )
    embedder = get_embedder(config.embedder) if config.embedder else None
    file_pool = None
    total = PredictStats()
    for records, lang, benchmark in jobs:
        source = None
        if config.examples != "none":
            if config.pool is None:  # in-domain, from the benchmark's train split
                pool = ExamplePool.from_benchmark(
                    benchmark,
                    config.pool_size,
                    seed=config.seed,
                    embedder=embedder,
                    stopwords=config.stopwords,
                )
            else:
                if file_pool is None:
                    file_pool = ExamplePool.from_source(
                        config.pool,
                        embedder,
                        size=config.pool_size,
                        seed=config.seed,
                        stopwords=config.stopwords,
                    )
                pool = file_pool
            threshold = config.bm25_threshold if config.examples == "out-domain" else None
            source = Retriever(
                pool,
                k=config.k,
                bm25_threshold=threshold,
                seed=config.seed,
                allow_identical=config.allow_identical_examples,
            )
        stats = predict_records(
            records,
            answerer,
            config.output,
            examples=source,
            lang=lang,
            max_chunk_tokens=config.max_chunk_tokens,
            progress=progress,
        )
        for name in PredictStats.__dataclass_fields__:
            setattr(total, name, getattr(total, name) + getattr(stats, name))
    return total
