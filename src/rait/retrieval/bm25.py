"""BM25 as the RA-IT reference scored it (gensim 3.8's scale, which the paper's threshold of 20 is on): the
reference's tokenization, stopword lists, and :class:`BM25Index` over a sparse document-term matrix."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from rait.console import progress
from rait.errors import RaitError
from rait.fileio import read_text


def load_stopwords(spec: str | Path | Iterable[str] | None) -> frozenset[str]:
    """``None`` (no stopwords), ``"en"`` / ``"zh"`` (bm25s's English / Chinese lists), a file path
    (one word per line), or an iterable of words. Tokens keep their case, so matching is exact."""
    if spec is None:
        return frozenset()
    if isinstance(spec, str) and spec in ("en", "zh"):
        from bm25s.stopwords import STOPWORDS_CHINESE, STOPWORDS_EN

        return frozenset(STOPWORDS_EN if spec == "en" else STOPWORDS_CHINESE)
    if isinstance(spec, str | Path):
        path = Path(spec)
        if not path.is_file():
            raise RaitError(f"stopword list {path} does not exist (or use 'en' / 'zh')")
        return frozenset(w.strip() for w in read_text(path).splitlines() if w.strip())
    return frozenset(spec)


def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def tokenize(text: str, lang: str = "en", stopwords: frozenset[str] = frozenset()) -> list[str]:
    """BM25 tokens as the RA-IT reference made them (``gen_bm25.py``): ``jieba.lcut`` for Chinese, a split
    on single spaces for English; case, punctuation and whitespace tokens kept; then stopwords dropped."""
    tokens = _jieba().lcut(text) if lang == "zh" else text.split(" ")
    return [t for t in tokens if t not in stopwords] if stopwords else tokens


class BM25Index:
    """BM25 on the scale of gensim 3.8's ``gensim.summarization.bm25.BM25``, which the paper's threshold of
    20 is on: ``idf = log(N - df + 0.5) - log(df + 0.5)``, a negative idf replaced by ``epsilon`` x the
    average idf; term weight ``idf * tf*(k1+1) / (tf + k1*(1 - b + b*dl/avgdl))``; a query term counts
    once per occurrence. Computed in float64 over a sparse document-term matrix (no gensim needed); equal
    to gensim 3.8.3 within 1e-6 (``tests/test_reference_parity.py``).

    ``score`` returns the scores of queries against given candidate documents only: it gathers the
    candidates' rows of the weight matrix and looks the query's term counts up in a dense per-batch table,
    instead of scoring the whole pool per query."""

    def __init__(
        self,
        texts: Sequence[str],
        lang: str = "en",
        stopwords=None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        show_progress: bool = False,
    ):
        self.lang = lang
        self.stopwords = load_stopwords(stopwords)
        vocab: defaultdict[str, int] = defaultdict()
        vocab.default_factory = vocab.__len__  # a new token gets the next id
        ids: list[list[int]] = []
        with progress("BM25 tokenizing", len(texts), show_progress) as advance:
            for text in texts:
                ids.append(list(map(vocab.__getitem__, tokenize(text, lang, self.stopwords))))
                advance(1)
        self.vocab: dict[str, int] = dict(vocab)
        self.n_docs = len(texts)
        self.doc_terms = self._count_matrix(ids)
        counts = self.doc_terms
        doc_freq = np.bincount(counts.indices, minlength=len(self.vocab)).astype(np.float64)
        idf = np.log(self.n_docs - doc_freq + 0.5) - np.log(doc_freq + 0.5)
        self.average_idf = float(idf.mean()) if len(idf) else 0.0
        idf[idf < 0] = epsilon * self.average_idf
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        self.avgdl = float(lengths.sum() / self.n_docs) if self.n_docs else 0.0
        tf = counts.data
        if self.avgdl > 0:
            norm = k1 * (1 - b + b * np.repeat(lengths, np.diff(counts.indptr)) / self.avgdl)
            data = idf[counts.indices] * tf * (k1 + 1) / (tf + norm)
        else:
            data = np.zeros(0)
        self.idf = idf
        self.weights = sp.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)

    def _count_matrix(self, ids: list[list[int]]) -> sp.csr_matrix:
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        cols = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(ids)), lengths)
        shape = (len(ids), len(self.vocab))
        matrix = sp.csr_matrix((np.ones(len(cols), np.float64), (rows, cols)), shape=shape)
        matrix.sum_duplicates()
        return matrix

    def query_matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Term counts of external query texts over the pool vocabulary (unknown terms dropped)."""
        vocab = self.vocab
        ids = [[vocab[t] for t in tokenize(text, self.lang, self.stopwords) if t in vocab] for text in texts]
        return self._count_matrix(ids)

    def score(
        self, queries: sp.csr_matrix, candidates: np.ndarray, show_progress: bool = False
    ) -> np.ndarray:
        """``scores[i, j]`` = BM25 of query row ``i`` against pool document ``candidates[i, j]``
        (``-inf`` where ``candidates`` is -1), float64."""
        candidates = np.asarray(candidates, dtype=np.int64).reshape(queries.shape[0], -1)
        n, m = candidates.shape
        out = np.full((n, m), -np.inf, dtype=np.float64)
        width = max(len(self.vocab), 1)
        batch = int(max(1, min(32, 4_000_000 // width)))  # a small (cache-friendly) query table
        table = np.zeros(batch * width, dtype=np.float64)  # row q = query q's term counts
        with progress("BM25 scoring", n, show_progress) as advance:
            for start in range(0, n, batch):
                stop = min(start + batch, n)
                size = stop - start
                block = queries[start:stop]
                slots = np.repeat(np.arange(size) * width, np.diff(block.indptr)) + block.indices
                table[slots] = block.data
                cand = candidates[start:stop]
                valid = cand >= 0
                rows = self.weights[np.where(valid, cand, 0).ravel()]  # candidates' term weights
                per_query = np.diff(rows.indptr[::m])
                lookup = np.repeat(np.arange(size) * width, per_query) + rows.indices
                contrib = table[lookup] * rows.data
                if len(contrib):
                    sums = np.add.reduceat(contrib, np.minimum(rows.indptr[:-1], len(contrib) - 1))
                    sums[np.diff(rows.indptr) == 0] = 0
                else:
                    sums = np.zeros(size * m, dtype=np.float64)
                out[start:stop] = np.where(valid, sums.reshape(size, m), -np.inf)
                table[slots] = 0
                advance(size)
        return out
