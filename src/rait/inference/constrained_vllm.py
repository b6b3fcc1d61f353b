"""Copy-constrained decoding in vLLM: a batch-level logits processor (vLLM's V1 ``AdapterLogitsProcessor``)
wrapping :class:`rait.inference.constrained.RequestConstraint` for every request whose
``SamplingParams.extra_args`` carry ``rait_passage`` (and ``rait_words``: strings only at word boundaries).
Importing this module needs vLLM; the class goes to ``vllm.LLM(logits_processors=[...])``.
"""

from __future__ import annotations

from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from rait.inference.constrained import PassageConstraint, RequestConstraint, TokenVocab


class CopyConstraintLogitsProcessor(AdapterLogitsProcessor):
    """Applies the copy constraint to requests with ``extra_args={"rait_passage": text, "rait_words": bool}``;
    the request's ``max_tokens`` is the cap and its ``stop_token_ids`` the end-of-turn tokens."""

    def __init__(self, vllm_config, device, is_pin_memory):
        super().__init__(vllm_config, device, is_pin_memory)
        self._tokenizer_name = vllm_config.model_config.tokenizer
        self._vocabs: dict[tuple[int, ...], TokenVocab] = {}

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params):
        extra = params.extra_args or {}
        text = extra.get("rait_passage")
        if text is None:
            return None
        stops = tuple(sorted(params.stop_token_ids or ()))
        if stops not in self._vocabs:
            from transformers import AutoTokenizer

            self._vocabs[stops] = TokenVocab(AutoTokenizer.from_pretrained(self._tokenizer_name), stops)
        constraint = PassageConstraint(text, self._vocabs[stops], bool(extra.get("rait_words")))
        return RequestConstraint(constraint, params.max_tokens)
