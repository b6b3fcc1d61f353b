"""Example retrieval for RA-IT: the :class:`ExamplePool` of labelled records with the paper's sampling
strategies (:mod:`.pool`), BM25 on the reference's scale (:mod:`.bm25`), sentence embedders with an on-disk
cache (:mod:`.embed`), and the examples of each inference example mode (:mod:`.examples`)."""

from rait.retrieval.bm25 import BM25Index, load_stopwords, tokenize
from rait.retrieval.embed import Embedder, get_embedder
from rait.retrieval.examples import EXAMPLE_MODES, POOL_MODES, Retriever, check_mode, example_retriever
from rait.retrieval.pool import (
    DEFAULT_BM25_THRESHOLD,
    DEFAULT_K,
    DEFAULT_MIXED_RATIO,
    DEFAULT_NUM_EXAMPLES,
    INDEXES,
    STRATEGIES,
    ExamplePool,
    check_options,
)

__all__ = [
    "DEFAULT_BM25_THRESHOLD",
    "DEFAULT_K",
    "DEFAULT_MIXED_RATIO",
    "DEFAULT_NUM_EXAMPLES",
    "EXAMPLE_MODES",
    "INDEXES",
    "POOL_MODES",
    "STRATEGIES",
    "BM25Index",
    "Embedder",
    "ExamplePool",
    "Retriever",
    "check_mode",
    "check_options",
    "example_retriever",
    "get_embedder",
    "load_stopwords",
    "tokenize",
]
