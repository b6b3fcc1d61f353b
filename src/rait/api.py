"""A GLiNER-like Python API: load a trained model once, extract entities of any types you name.

>>> ner = NER.from_pretrained("runs/quickstart/adapter")                     # doctest: +SKIP
>>> ner.predict_entities("Marie Curie won the Nobel Prize.", ["person", "award"])  # doctest: +SKIP
[{'text': 'Marie Curie', 'type': 'person', 'start': 0, 'end': 11, 'found': True}, ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rait.errors import RaitError
from rait.formats import detect_lang
from rait.predict import (
    PassageQuery,
    Predictor,
    Retriever,
    VllmPredictor,
    entities_from_answers,
    load_predictor,
)
from rait.records import Record

POOL_MODES = ("out-domain", "in-domain")


class NER:
    """Open NER with a RA-IT model: each entity type is asked as its own question about the passage.

    ``pool`` (optional) holds labelled examples to retrieve in-context examples from when a call passes
    ``examples="pool"``: an :class:`rait.retrieval.ExamplePool`, a list of :class:`Record`, or a training
    file / registered training source. ``pool_mode`` ``"out-domain"`` keeps the ``k`` nearest examples
    whose BM25 score reaches ``bm25_threshold`` (the paper's setting for a general training pool);
    ``"in-domain"`` keeps the ``k`` nearest (a pool labelled for the target domain). ``lang`` fixes the
    template language; ``None`` detects it per passage (Chinese when a fifth of it is CJK). ``embedder``
    (a name for :func:`rait.embed.get_embedder` or an Embedder) embeds a pool given as records or a file
    (default: the offline model for its language).

    ``n_queries`` / ``n_malformed`` count the (passage, type) questions asked and the answers that did
    not parse (those count as no entities)."""

    def __init__(
        self,
        predictor: Predictor | VllmPredictor,
        *,
        pool=None,
        pool_mode: str = "out-domain",
        k: int = 2,
        bm25_threshold: float = 20.0,
        lang: str | None = None,
        embedder=None,
        seed: int = 42,
    ):
        if pool_mode not in POOL_MODES:
            raise RaitError(f"unknown pool_mode {pool_mode!r}; choose one of {', '.join(POOL_MODES)}")
        self.predictor = predictor
        self.lang = lang
        self.retriever = None
        if pool is not None:
            threshold = bm25_threshold if pool_mode == "out-domain" else None
            self.retriever = Retriever(
                _as_pool(pool, lang, embedder), k=k, bm25_threshold=threshold, seed=seed
            )
        self.n_queries = 0
        self.n_malformed = 0

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | None = None,
        *,
        adapter: str | None = None,
        pool=None,
        pool_mode: str = "out-domain",
        k: int = 2,
        bm25_threshold: float = 20.0,
        lang: str | None = None,
        embedder=None,
        max_new_tokens: int = 64,
        batch_size: int = 128,
        device: str | None = None,
        backend: str = "hf",
        precision: str = "auto",
    ) -> NER:
        """Load a LoRA adapter dir (its base model is read from its config), a merged model dir, a Hub id,
        or ``None`` for the embedded default (SmolLM2-135M-Instruct, untuned); ``adapter`` adds a LoRA
        adapter to the model. ``backend="vllm"`` needs a GPU and ``pip install 'rait[gpu]'``. ``precision``:
        ``auto`` (bf16 where the CPU or GPU computes it natively), ``fp32`` or ``bf16``."""
        predictor = load_predictor(
            path_or_id,
            adapter=adapter,
            backend=backend,
            lang=lang or "en",
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            device=device,
            precision=precision,
        )
        return cls(
            predictor,
            pool=pool,
            pool_mode=pool_mode,
            k=k,
            bm25_threshold=bm25_threshold,
            lang=lang,
            embedder=embedder,
        )

    def predict_entities(
        self, text: str, types: Sequence[str], examples: str | Sequence[Record] | None = None
    ) -> list[dict]:
        """Entities ``{"text", "type", "start", "end", "found"}`` of the given types in ``text``.

        Every occurrence of an answered mention is returned, with character offsets (``end`` exclusive),
        sorted by position; a mention the model gave that is not in the text is kept once with
        ``start``/``end`` ``None`` and ``found`` False. ``examples``: ``None`` (none), ``"pool"``
        (retrieved from the attached pool) or a list of labelled :class:`Record` to show the model."""
        return self.batch_predict_entities([text], types, examples)[0]

    def batch_predict_entities(
        self, texts: Sequence[str], types: Sequence[str], examples: str | Sequence[Record] | None = None
    ) -> list[list[dict]]:
        """:meth:`predict_entities` for many texts at once (batched; the same types for every text)."""
        texts = list(texts)
        if isinstance(examples, str):
            if examples != "pool":
                raise RaitError(f"examples must be None, 'pool' or a list of records, not {examples!r}")
            if self.retriever is None:
                raise RaitError("examples='pool' needs a pool: NER.from_pretrained(..., pool=...)")
            shown = self.retriever([Record(f"query-{i}", text) for i, text in enumerate(texts)])
        else:
            shown = [list(examples or ())] * len(texts)
        queries = [
            PassageQuery(text, tuple(types), tuple(ex), self.lang or detect_lang(text))
            for text, ex in zip(texts, shown, strict=True)
        ]
        results = []
        for text, answers in zip(texts, self.predictor.answer_many(queries), strict=True):
            entities, malformed = entities_from_answers(text, types, answers)
            self.n_queries += len(types)
            self.n_malformed += malformed
            results.append(entities)
        return results


def _as_pool(pool, lang: str | None, embedder=None):
    """An ExamplePool from a pool, a list of records, or a training file / registered source name."""
    from rait.embed import get_embedder
    from rait.retrieval import ExamplePool

    if isinstance(embedder, str):
        embedder = get_embedder(embedder, lang or "en")

    if hasattr(pool, "retrieve"):
        return pool
    if isinstance(pool, str | Path):
        return ExamplePool.from_source(str(pool), embedder, lang=lang)
    records = list(pool)
    if not all(isinstance(r, Record) for r in records):
        raise RaitError("pool must be an ExamplePool, a list of Record, or a training file / source name")
    return ExamplePool(records, embedder, lang=lang or detect_lang(" ".join(r.text for r in records[:50])))
