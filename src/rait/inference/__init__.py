"""Inference: answer (passage, type) questions with a model and locate the answers in the passage.

Modules: :mod:`.answerer` (the :class:`Answerer` interface every backend implements, :class:`PassageQuery`,
the decodings), the backends :mod:`.transformers` (:class:`Predictor`; its bf16 CPU products on
:mod:`.packing`'s packed weights, its decoding cache :mod:`.kvcache`) and :mod:`.vllm`
(:class:`VllmPredictor`), :mod:`.backends` (:func:`load_predictor`, which picks one), :mod:`.constrained`
and :mod:`.constrained_vllm` (the copy constraint), :mod:`.stopping` (length caps, the repetition rule),
:mod:`.chunking` (long passages in sentence chunks), :mod:`.entities` (answers -> located entities),
:mod:`.confidence` (mention scores at choice points, the threshold, one type per span) and :mod:`.predict`
(prediction runs over benchmarks and files)."""

from rait.inference.answerer import (
    DECODINGS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODING,
    Answerer,
    PassageQuery,
    check_decoding,
)
from rait.inference.backends import BACKENDS, load_predictor
from rait.inference.chunking import (
    DEFAULT_MAX_CHUNK_TOKENS,
    ChunkedAnswerer,
    merge_chunk_entities,
    with_chunking,
)
from rait.inference.confidence import (
    DEFAULT_MULTI_LABEL,
    DEFAULT_THRESHOLD,
    SCORE_RULE,
    check_multi_label,
    check_threshold,
    select_entities,
)
from rait.inference.entities import answer_mentions, entities_from_answers, locate, located_entities
from rait.inference.predict import (
    ExampleSource,
    PredictConfig,
    PredictStats,
    meta_path,
    predict_records,
    query_rows,
    reselect,
    run_predict,
)
from rait.inference.stopping import DEFAULT_MAX_NEW_TOKENS, PAPER_MAX_NEW_TOKENS
from rait.inference.transformers import Predictor
from rait.inference.vllm import VllmPredictor

__all__ = [
    "BACKENDS",
    "DECODINGS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DECODING",
    "DEFAULT_MAX_CHUNK_TOKENS",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_MULTI_LABEL",
    "DEFAULT_THRESHOLD",
    "PAPER_MAX_NEW_TOKENS",
    "SCORE_RULE",
    "Answerer",
    "ChunkedAnswerer",
    "ExampleSource",
    "PassageQuery",
    "PredictConfig",
    "PredictStats",
    "Predictor",
    "VllmPredictor",
    "answer_mentions",
    "check_decoding",
    "check_multi_label",
    "check_threshold",
    "entities_from_answers",
    "load_predictor",
    "locate",
    "located_entities",
    "meta_path",
    "merge_chunk_entities",
    "predict_records",
    "query_rows",
    "reselect",
    "run_predict",
    "select_entities",
    "with_chunking",
]
