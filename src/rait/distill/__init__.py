"""``rait distill``: annotate a raw corpus with teacher LLMs into open-NER training data (UniversalNER-style
targeted distillation, optionally an ensemble of teachers voting as in the RA-IT paper)."""

from rait.distill.cache import ResponseCache, request_key
from rait.distill.corpus import Chunk, CorpusStats, chunk_text, iter_chunks, load_tokenizer, sample_chunks
from rait.distill.filtering import drop_reason, filter_output, parse_output, resolve_min_agree, vote
from rait.distill.pipeline import Budget, DistillConfig, RetryPolicy, annotate_chunks, build_teachers, distill
from rait.distill.teachers import (
    DEFAULT_TYPES,
    PROMPTS,
    LocalTeacher,
    OpenAITeacher,
    Prompt,
    RequestFailed,
    RetryableError,
    Teacher,
    TeacherReply,
    TeacherSpec,
    load_prompt,
)

__all__ = [
    "DEFAULT_TYPES",
    "PROMPTS",
    "Budget",
    "Chunk",
    "CorpusStats",
    "DistillConfig",
    "LocalTeacher",
    "OpenAITeacher",
    "Prompt",
    "RequestFailed",
    "ResponseCache",
    "RetryPolicy",
    "RetryableError",
    "Teacher",
    "TeacherReply",
    "TeacherSpec",
    "annotate_chunks",
    "build_teachers",
    "chunk_text",
    "distill",
    "drop_reason",
    "filter_output",
    "iter_chunks",
    "load_prompt",
    "load_tokenizer",
    "parse_output",
    "request_key",
    "resolve_min_agree",
    "sample_chunks",
    "vote",
]
