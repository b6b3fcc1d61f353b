"""Embedders: the cache (keyed by model and text), batching, normalisation, and the real offline models."""

from __future__ import annotations

import numpy as np
import pytest

from rait.errors import RaitError
from rait.retrieval.embed import (
    Embedder,
    EmbeddingCache,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    USEEmbedder,
    get_embedder,
    minilm_path,
)

TEXTS = [
    "The cat sat on the mat and purred.",
    "Barack Obama was the 44th president of the United States.",
    "Apple released the iPhone in San Francisco in 2007.",
    "A kitten slept on the rug.",
    "Stock markets fell sharply on Monday.",
]
ZH_TEXTS = ["李白是唐代著名诗人。", "华为在深圳发布了新手机。", "杜甫是唐朝的伟大诗人。", "今天北京下雨了。"]


class CountingEmbedder(Embedder):
    """Deterministic vectors from the text length and first letter; records every batch it embeds."""

    batch_size = 2

    def __init__(self, cache_dir, name="counting", fail_on_batch: int | None = None):
        self.batches: list[list[str]] = []
        self.fail_on_batch = fail_on_batch
        super().__init__(name, cache_dir)

    def _embed(self, texts):
        if self.fail_on_batch is not None and len(self.batches) == self.fail_on_batch:
            raise RuntimeError("crash")
        self.batches.append(list(texts))
        return np.array([[len(t), ord(t[0]), 1.0] for t in texts], dtype=np.float32)


def embedded_texts(embedder: CountingEmbedder) -> list[str]:
    return [t for batch in embedder.batches for t in batch]


def test_vectors_are_normalised_float32_and_batched(tmp_path):
    embedder = CountingEmbedder(tmp_path)
    vectors = embedder.encode(TEXTS, show_progress=False)
    assert vectors.dtype == np.float32 and vectors.shape == (5, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert [len(b) for b in embedder.batches] == [2, 2, 1]
    raw = np.array([len(TEXTS[1]), ord("B"), 1.0])
    np.testing.assert_allclose(vectors[1], raw / np.linalg.norm(raw), rtol=1e-6)


def test_second_run_embeds_nothing(tmp_path):
    first = CountingEmbedder(tmp_path)
    vectors = first.encode(TEXTS, show_progress=False)
    assert first.n_embedded == 5 and first.n_cached == 0
    second = CountingEmbedder(tmp_path)  # a fresh process: only the disk cache is shared
    again = second.encode(TEXTS, show_progress=False)
    assert second.batches == [] and second.n_embedded == 0 and second.n_cached == 5
    np.testing.assert_array_equal(vectors, again)


def test_only_new_texts_are_embedded_and_duplicates_once(tmp_path):
    CountingEmbedder(tmp_path).encode(TEXTS[:3], show_progress=False)
    embedder = CountingEmbedder(tmp_path)
    vectors = embedder.encode([TEXTS[3], TEXTS[0], TEXTS[3], TEXTS[4]], show_progress=False)
    assert embedded_texts(embedder) == [TEXTS[3], TEXTS[4]]
    np.testing.assert_array_equal(vectors[0], vectors[2])


def test_cache_is_per_model(tmp_path):
    CountingEmbedder(tmp_path, name="model-a").encode(TEXTS, show_progress=False)
    other = CountingEmbedder(tmp_path, name="model-b")
    other.encode(TEXTS, show_progress=False)
    assert other.n_embedded == 5
    assert EmbeddingCache(tmp_path, "model-a").path != EmbeddingCache(tmp_path, "model-b").path


def test_interrupted_run_keeps_finished_batches(tmp_path):
    with pytest.raises(RuntimeError):
        CountingEmbedder(tmp_path, fail_on_batch=1).encode(TEXTS, show_progress=False)
    assert len(EmbeddingCache(tmp_path, "counting")) == 2
    resumed = CountingEmbedder(tmp_path)
    resumed.encode(TEXTS, show_progress=False)
    assert embedded_texts(resumed) == TEXTS[2:]


def test_no_cache(tmp_path):
    embedder = get_embedder("hashing", cache=False)
    assert embedder.cache is None
    embedder.encode(["a b"], show_progress=False)
    embedder.encode(["a b"], show_progress=False)
    assert embedder.n_embedded == 2


def test_embedder_selection_by_name_and_language(tmp_path):
    assert isinstance(get_embedder(None, "zh", tmp_path), USEEmbedder)
    english = get_embedder(None, "en", tmp_path)
    assert isinstance(english, SentenceTransformerEmbedder) and english.name == "minilm"
    assert english.model_path == str(minilm_path())
    hub = get_embedder("thenlper/gte-large", cache_dir=tmp_path)
    assert isinstance(hub, SentenceTransformerEmbedder) and hub.cache.model_key == "thenlper/gte-large"
    assert isinstance(get_embedder("hashing", cache_dir=tmp_path), HashingEmbedder)


def test_hashing_embedder_is_lexical():
    vectors = HashingEmbedder(cache=False).encode(
        ["The cat sat", "the CAT sat!", "dogs bark"], show_progress=False
    )
    assert vectors[0] @ vectors[1] == pytest.approx(1.0)
    assert vectors[0] @ vectors[2] < 0.9


def check_passage_embeddings(vectors: np.ndarray) -> None:
    """Different texts give different vectors, and each text's vector is its own nearest neighbour."""
    similarity = vectors @ vectors.T
    assert np.all(np.argmax(similarity, axis=1) == np.arange(len(vectors)))
    off_diagonal = similarity[~np.eye(len(vectors), dtype=bool)]
    assert off_diagonal.max() < 0.99


@pytest.mark.slow
def test_sentence_transformers_local_path(tmp_path):
    embedder = get_embedder(str(minilm_path()), cache_dir=tmp_path)
    assert embedder.cache.model_key == str(minilm_path().resolve())
    vectors = embedder.encode(TEXTS, show_progress=False)
    assert vectors.shape == (5, 384)
    check_passage_embeddings(vectors)
    similarity = vectors @ vectors.T
    assert np.argsort(-similarity[0])[1] == 3  # the cat sentence's nearest other is the kitten one
    cached = get_embedder(str(minilm_path()), cache_dir=tmp_path)
    np.testing.assert_array_equal(cached.encode(TEXTS, show_progress=False), vectors)
    assert cached._model is None and cached.n_embedded == 0  # a fully cached run never loads the model


def test_use_multilingual_chinese(tmp_path):
    vectors = get_embedder(None, "zh", tmp_path).encode(ZH_TEXTS, show_progress=False)
    assert vectors.shape == (4, 512)
    check_passage_embeddings(vectors)
    assert np.argsort(-(vectors @ vectors[0]))[1] == 2  # the two Tang-poet sentences


def test_wrong_number_of_vectors_is_an_error(tmp_path):
    class Broken(CountingEmbedder):
        def _embed(self, texts):
            return np.ones((1, 3), dtype=np.float32)

    with pytest.raises(RaitError, match="returned 1 vectors for 2 texts"):
        Broken(tmp_path).encode(TEXTS[:2], show_progress=False)
