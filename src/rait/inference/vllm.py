"""vLLM inference (:class:`VllmPredictor`): the same prompts as
:class:`rait.inference.transformers.Predictor`, decoded greedily by vLLM.

Confidence scores (:mod:`rait.inference.confidence`) come from the ``VLLM_LOGPROBS`` most likely tokens vLLM
returns at each generated position (its raw log-probabilities, before the copy constraint): at a choice
point the tokens outside them count as probability 0 (an engine started with ``max_logprobs`` below
``VLLM_LOGPROBS``, vLLM's default, refuses the requests). An answer returned without log-probabilities
carries no scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from rait.answers import Answer
from rait.chat import encode_system, ensure_chat_template, stop_token_ids
from rait.errors import RaitError
from rait.fileio import read_json
from rait.inference.answerer import Answerer, PassageQuery, check_decoding
from rait.inference.confidence import ChoiceRecorder
from rait.inference.entities import answer_mentions, scored_answer
from rait.inference.stopping import DEFAULT_MAX_NEW_TOKENS, loop_end

VLLM_LOGPROBS = 20  # log-probabilities vLLM returns per generated token, for the confidence scores


class VllmPredictor(Answerer):
    """The same prompts (token ids from :func:`rait.chat.encode_turns`) decoded greedily by vLLM, with its
    automatic prefix caching sharing each passage's prefix across its type questions. Needs a GPU and
    ``pip install 'rait[gpu]'``. ``model``: a model directory/Hub id or a LoRA adapter directory.
    ``decoding="constrained"`` (or ``"constrained-words"``) applies the copy constraint through a vLLM logits
    processor (:mod:`rait.inference.constrained_vllm`, vLLM's V1 ``AdapterLogitsProcessor`` interface)."""

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
        check_decoding(decoding, max_new_tokens)
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise RaitError("the vllm backend needs vLLM and a GPU: pip install 'rait[gpu]'") from None
        if decoding != "free":
            try:
                from rait.inference.constrained_vllm import CopyConstraintLogitsProcessor
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
        self.stop_ids = frozenset(stop_token_ids(self.tokenizer))
        self.params = vllm.SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens,
            stop_token_ids=stop_token_ids(self.tokenizer),
            logprobs=VLLM_LOGPROBS,
        )
        self.lora = LoRARequest("rait-adapter", 1, str(adapter)) if adapter is not None else None

    def _answer(self, completion) -> Answer:
        """A vLLM completion as an :class:`Answer` with its mentions' scores; a row that looped is cut where
        the transformers path stops it (:func:`rait.inference.stopping.loop_end`), so both backends give the
        same answers."""
        ids = list(completion.token_ids)
        end = loop_end(ids) if self.stop_repetition and self.decoding == "free" else None
        probs = self._open_probs(ids, getattr(completion, "logprobs", None))
        if end is not None:
            text, reason = self.tokenizer.decode(ids[:end], skip_special_tokens=True).strip(), "repetition"
        else:
            text, reason = (
                completion.text.strip(),
                "length" if completion.finish_reason == "length" else "stop",
            )
        return Answer(text, reason) if probs is None else scored_answer(text, reason, probs)

    def _open_probs(self, ids: list[int], logprobs) -> list[float] | None:
        """``p_open`` at each choice point of ``ids`` from vLLM's top log-probabilities per position."""
        if not logprobs or len(logprobs) < len(ids):
            return None
        recorder = ChoiceRecorder(self._choice_tokens(), 1)
        for token, top in zip(ids, logprobs, strict=False):
            if token in self.stop_ids:
                break
            state = recorder.advance(0, token)
            if state is not None:
                logits = torch.full((len(self.tokenizer),), -math.inf)
                for other, entry in top.items():
                    if other < len(logits):
                        logits[other] = entry.logprob
                recorder.probs[0].append(self._choice_tokens().open_probability(state, logits))
        return recorder.probs[0]

    def iter_answers(self, queries: Sequence[PassageQuery]) -> Iterator[tuple[int, list[str]]]:
        prompts, owners, params = [], [], []
        for index, query in enumerate(queries):
            prefix, suffixes = self._token_ids(self.tokenizer, query)
            prompts += [{"prompt_token_ids": prefix + suffix} for suffix in suffixes]
            owners += [index] * len(suffixes)
            if self.decoding != "free":  # the logits processor reads the passage from extra_args
                for _ in suffixes:
                    params.append(self.params.clone())
                    params[-1].extra_args = {"rait_passage": query.text, "rait_words": self._word_bounds}
        outputs = (
            self.llm.generate(prompts, params or self.params, lora_request=self.lora, use_tqdm=False)
            if prompts
            else []
        )
        answers: list[list[str]] = [[] for _ in queries]
        for index, output in zip(owners, outputs, strict=True):
            answer = self._answer(output.outputs[0])
            if self.decoding != "free":  # an answer that ended by looping is cut and closed
                text = self._copy_constraint(queries[index].text).finish(answer.encode()).decode()
                scores = answer.scores and answer.scores[: len(answer_mentions(text)[0])]  # cut: a prefix
                answer = Answer(text, answer.finish_reason, scores)
            answers[index].append(answer)
        yield from enumerate(answers)
