"""A GLiNER-like Python API: load a trained model once, extract entities of any types you name.

>>> ner = NER.from_pretrained()          # the built-in model; or an adapter dir  # doctest: +SKIP
>>> ner.predict_entities("Marie Curie won the Nobel Prize.", ["person", "award"])  # doctest: +SKIP
[{'text': 'Marie Curie', 'type': 'person', 'start': 0, 'end': 11, 'found': True, 'score': 0.9241}, ...]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rait.data.formats import detect_lang
from rait.errors import RaitError
from rait.inference import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODING,
    DEFAULT_MAX_CHUNK_TOKENS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MULTI_LABEL,
    DEFAULT_THRESHOLD,
    ChunkedAnswerer,
    PassageQuery,
    Predictor,
    VllmPredictor,
    check_decoding,
    check_multi_label,
    check_threshold,
    entities_from_answers,
    load_predictor,
    merge_chunk_entities,
    select_entities,
)
from rait.precision import DEFAULT_PRECISION
from rait.records import DEFAULT_SEED, Record
from rait.retrieval import (
    DEFAULT_BM25_THRESHOLD,
    DEFAULT_NUM_EXAMPLES,
    POOL_MODES,
    ExamplePool,
    check_mode,
    example_retriever,
    get_embedder,
)

EXAMPLES = ("none", "pool", *POOL_MODES)


@dataclass(slots=True)
class Extraction:
    """What :meth:`NER.extract` found in one text: its entities (see :meth:`NER.predict_entities`), the
    character spans of the chunks it was split into (one span covering it when it fit the context), the
    number of malformed answers (counted as no entities) and the number of examples shown with it."""

    entities: list[dict]
    chunks: list[tuple[int, int]]
    n_malformed: int = 0
    n_examples: int = 0

    @property
    def chunked(self) -> bool:
        return len(self.chunks) > 1

    @classmethod
    def joined(cls, chunks: Sequence[tuple[int, int]], parts: Sequence[Extraction]) -> Extraction:
        """One text's extraction from those of its ``chunks`` (each extracted as a text of its own, every
        entity kept), merged as :meth:`NER.extract` merges a text it split; one part is the text's own."""
        if len(parts) == 1:
            return parts[0]
        entities = [(start, part.entities) for (start, _), part in zip(chunks, parts, strict=True)]
        malformed = sum(part.n_malformed for part in parts)
        return cls(merge_chunk_entities(entities), list(chunks), malformed, max(p.n_examples for p in parts))


class NER:
    """Open NER with a RA-IT model: each entity type is asked as its own question about the passage.

    ``pool`` (optional) holds labelled examples to retrieve in-context examples from when a call passes
    ``examples="pool"``, ``"out-domain"`` or ``"in-domain"``: an :class:`rait.retrieval.ExamplePool`, a
    list of :class:`Record`, or a training file / registered training source. Out-domain keeps the ``k``
    nearest examples whose BM25 score reaches ``bm25_threshold`` (the paper's setting for a general
    training pool); in-domain keeps the ``k`` nearest (a pool labelled for the target domain); ``"pool"``
    uses ``pool_mode``. ``examples`` is the mode of calls that name none (default ``"none"``; a model saved
    with a pool may ship ``"pool"``). ``lang`` fixes the template language; ``None`` detects it per passage
    (Chinese when a fifth of it is CJK). ``embedder`` (a name for :func:`rait.retrieval.get_embedder` or an
    Embedder) embeds a pool given as records or a file (default: the offline model for its language).

    Texts longer than the model's context or ``max_chunk_tokens`` are split into sentence chunks
    (:mod:`rait.inference.chunking`; ``None``: the context is the only limit); examples are retrieved for the
    whole text and shown with each chunk. ``n_queries`` / ``n_malformed`` count the (text, type) questions
    asked and the answers that did not parse (those count as no entities); ``n_chunked`` the texts split.

    Every entity has a confidence ``score`` in [0, 1] (:mod:`rait.inference.confidence`; none with a backend
    that gives none). Entities scored below ``threshold`` are dropped (None or 0: none), and unless
    ``multi_label`` each span keeps only its best-scoring type (GLiNER's ``flat_ner``); calls may override
    both. With a threshold, an answer is decoded only until its score is known: one scored below it ends
    there (its mentions would be dropped; such answers never count as malformed)."""

    def __init__(
        self,
        predictor: Predictor | VllmPredictor,
        *,
        pool=None,
        pool_mode: str = "out-domain",
        k: int = DEFAULT_NUM_EXAMPLES,
        bm25_threshold: float = DEFAULT_BM25_THRESHOLD,
        lang: str | None = None,
        embedder=None,
        seed: int = DEFAULT_SEED,
        max_chunk_tokens: int | None = DEFAULT_MAX_CHUNK_TOKENS,
        threshold: float | None = DEFAULT_THRESHOLD,
        multi_label: bool = DEFAULT_MULTI_LABEL,
        examples: str | None = None,
    ):
        check_mode(pool_mode, POOL_MODES, "pool_mode")
        self.predictor = predictor
        self.answerer = ChunkedAnswerer(predictor, max_chunk_tokens)
        self.lang = lang
        self.pool_mode = pool_mode
        self.pool = None if pool is None else _as_pool(pool, lang, embedder)
        self.k = k
        self.bm25_threshold = bm25_threshold
        self.seed = seed
        self.threshold = check_threshold(threshold)
        self.multi_label = check_multi_label(multi_label)
        self.examples = self._mode(examples or "none")
        self.n_queries = 0
        self.n_malformed = 0
        self.n_chunked = 0
        self.loaded_from: tuple[str | None, str | None] = (None, None)  # (model, adapter) of from_pretrained

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | None = None,
        *,
        adapter: str | None = None,
        pool=None,
        pool_mode: str | None = None,
        k: int | None = None,
        bm25_threshold: float | None = None,
        examples: str | None = None,
        lang: str | None = None,
        embedder=None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | None = None,
        backend: str = "hf",
        precision: str = DEFAULT_PRECISION,
        max_chunk_tokens: int | None = DEFAULT_MAX_CHUNK_TOKENS,
        system_prompt: str | None = None,
        decoding: str | None = None,
        threshold: float | None = None,
        multi_label: bool | None = None,
    ) -> NER:
        """Load a LoRA adapter dir (its base model is read from its config), a merged model dir, a Hub id or
        a built-in model name (:mod:`rait.builtin`); ``None``: the built-in model ``smollm2-ner-en`` when
        it is packaged, else the untuned embedded default. ``"smollm2-135m"`` is always the untuned
        SmolLM2-135M-Instruct. ``adapter`` adds a LoRA adapter to the model (with no ``path_or_id``: to
        the untuned default). ``batch_size``: type questions decoded together. ``backend="vllm"`` needs a
        GPU and ``pip install 'rait[gpu]'``. ``precision``: ``auto`` (bf16 where the CPU or GPU computes it
        natively), ``fp32`` or ``bf16``. ``system_prompt``: ``none``, ``default`` (the chat template's own)
        or a text; None uses the one the model was trained with. ``decoding="constrained-words"`` (default)
        lets the model answer only with distinct substrings of the passage that start and end at word
        boundaries (:mod:`rait.inference.constrained`), so every entity has offsets; ``"constrained"``: any
        substring (for languages whose names take suffixes); ``"free"``: plain greedy decoding. A directory
        written by :meth:`save_pretrained` (or a built-in model) supplies its saved decoding, system prompt,
        language, threshold, multi_label, examples mode and example pool (with its ``pool_mode``, ``k`` and
        ``bm25_threshold``) as the defaults; a ``pool`` given here replaces the saved one. ``threshold`` (0:
        keep every mention), ``multi_label``: see :class:`NER`; None: the saved one, else 0.92 and one type
        per span. ``pool_mode``, ``k``, ``bm25_threshold``: None: the saved pool's, else ``"out-domain"``,
        2 and 20."""
        from rait.builtin import default_model, resolve_builtin
        from rait.hub import saved_settings

        model = resolve_builtin(default_model(path_or_id, adapter))
        saved = saved_settings(model)
        shipped = (saved.get("pool") or {}) if pool is None else {}  # a given pool replaces the saved one
        if shipped:
            pool = ExamplePool.load(model, shipped, _embedder(embedder))
        decoding, threshold, multi_label = model_defaults(saved, decoding, threshold, multi_label)
        system_prompt = system_prompt or saved.get("system_prompt")
        lang = lang or saved.get("lang")
        predictor = load_predictor(
            path_or_id,
            adapter=adapter,
            backend=backend,
            lang=lang or "en",
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            device=device,
            precision=precision,
            system_prompt=system_prompt,
            decoding=decoding,
        )
        ner = cls(
            predictor,
            pool=pool,
            pool_mode=pool_mode or shipped.get("mode") or POOL_MODES[0],
            k=k or shipped.get("k") or DEFAULT_NUM_EXAMPLES,
            bm25_threshold=shipped.get("bm25_threshold", DEFAULT_BM25_THRESHOLD)
            if bm25_threshold is None
            else bm25_threshold,
            lang=lang,
            embedder=embedder,
            max_chunk_tokens=max_chunk_tokens,
            threshold=threshold,
            multi_label=multi_label,
            examples=examples or saved.get("examples"),
        )
        ner.loaded_from = (model, resolve_builtin(adapter)) if adapter else _split_adapter(model)
        return ner

    def save_pretrained(self, directory: str | Path, **card) -> Path:
        """Write everything :meth:`from_pretrained` needs to load this model as it is to ``directory``: the
        LoRA adapter it was loaded with (else the merged weights), the tokenizer, the inference settings
        (``rait_config.json``) and a ``README.md`` model card (:mod:`rait.model_card`; ``card`` options:
        ``scores`` (F1 by benchmark), ``license``, ``data_license``, ``title``). Returns the directory."""
        from rait.hub import save_ner

        return save_ner(self, directory, card=card)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None, **card):
        """:meth:`save_pretrained` to a temporary directory and upload it to the Hub model repo ``repo_id``
        (created when missing) with ``huggingface_hub``; returns the upload's commit info."""
        from rait.hub import push_ner

        return push_ner(self, repo_id, card=card, private=private, token=token)

    def predict_entities(
        self,
        text: str,
        types: Sequence[str],
        examples: str | Sequence[Record] | None = None,
        *,
        decoding: str | None = None,
        threshold: float | None = None,
        multi_label: bool | None = None,
    ) -> list[dict]:
        """Entities ``{"text", "type", "start", "end", "found", "score"}`` of the given types in ``text``.

        Every occurrence of an answered mention is returned, with character offsets (``end`` exclusive),
        sorted by position. Only with ``decoding="free"`` can the model give a mention that is not in the
        text: it is kept once with ``start``/``end`` ``None`` and ``found`` False. A text split into chunks
        has the entities located in each chunk, merged (logged by ``rait.inference.chunking``; :meth:`extract`
        returns the chunks).
        ``examples``: ``"none"``, ``"pool"``, ``"out-domain"``, ``"in-domain"`` (retrieved from the
        attached pool), a list of labelled :class:`Record` to show the model, or ``None``: the NER's
        ``examples`` mode. ``decoding``:
        one of :data:`DECODINGS` for this call (transformers backend); ``None``: the model's. ``threshold``
        (0: keep every score), ``multi_label``: see :class:`NER`; ``None``: this object's."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        found = self.extract(
            [text], [types], examples, decoding=decoding, threshold=threshold, multi_label=multi_label
        )
        return found[0].entities

    def batch_predict_entities(
        self,
        texts: Sequence[str],
        types: Sequence[str] | Sequence[Sequence[str]],
        examples: str | Sequence[Record] | None = None,
        *,
        batch_size: int = 32,
        decoding: str | None = None,
        threshold: float | None = None,
        multi_label: bool | None = None,
    ) -> list[list[dict]]:
        """:meth:`predict_entities` for many texts: ``batch_size`` texts (and all their chunks) go to the
        predictor in one batched call. ``types``: one list for every text, or one list per text."""
        found = self.extract(
            texts,
            types,
            examples,
            batch_size=batch_size,
            decoding=decoding,
            threshold=threshold,
            multi_label=multi_label,
        )
        return [extraction.entities for extraction in found]

    def extract(
        self,
        texts: Sequence[str],
        types: Sequence[str] | Sequence[Sequence[str]],
        examples: str | Sequence[Record] | None = None,
        *,
        batch_size: int = 32,
        decoding: str | None = None,
        threshold: float | None = None,
        multi_label: bool | None = None,
    ) -> list[Extraction]:
        """An :class:`Extraction` per text (see :meth:`batch_predict_entities` for the arguments).
        TypeError for texts that are not a list of strings, ValueError for a text or type that is not valid
        Unicode (a lone surrogate)."""
        texts = _checked_texts(texts)
        per_text = _types_per_text(types, len(texts))
        for entry in dict.fromkeys(per_text):
            for name in entry:
                check_unicode(name, f"type '{name.encode('utf-8', 'backslashreplace').decode()}'")
        if batch_size < 1:
            raise RaitError(f"batch_size must be at least 1, not {batch_size}")
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        multi_label = self.multi_label if multi_label is None else check_multi_label(multi_label)
        results: list[Extraction] = []
        with self._decoding(decoding), self._min_score(threshold):
            for start in range(0, len(texts), batch_size):
                batch = texts[start : start + batch_size]
                results += self._extract_batch(batch, per_text[start : start + batch_size], examples)
        for extraction in results:
            extraction.entities = select_entities(extraction.entities, threshold, multi_label)
        return results

    def chunk_spans(self, text: str, types: Sequence[str]) -> list[tuple[int, int]]:
        """The character spans of the chunks :meth:`extract` splits ``text`` into when asking it ``types``
        without examples (one span covering it when it fits)."""
        return self.answerer.spans(PassageQuery(text, tuple(types), (), self.lang or detect_lang(text)))

    @contextmanager
    def _decoding(self, decoding: str | None):
        """Decode with ``decoding`` inside the block (the predictor's own setting is restored after)."""
        current = getattr(self.predictor, "decoding", None)
        if decoding is None or decoding == current:
            yield
            return
        check_decoding(decoding, getattr(self.predictor, "max_new_tokens", None))
        if not isinstance(self.predictor, Predictor):
            raise RaitError(f"this model decodes {current!r}; another decoding per call needs the hf backend")
        self.predictor.decoding = decoding
        try:
            yield
        finally:
            self.predictor.decoding = current

    @contextmanager
    def _min_score(self, threshold: float | None):
        """Let the predictor cut answers scored below ``threshold`` inside the block (hf backend; their
        mentions would be dropped anyway: :attr:`rait.inference.transformers.Predictor.min_score`)."""
        if not threshold or not isinstance(self.predictor, Predictor):
            yield
            return
        current = self.predictor.min_score
        self.predictor.min_score = threshold
        try:
            yield
        finally:
            self.predictor.min_score = current

    def _mode(self, examples: str) -> str:
        """``examples`` checked as a mode: one of :data:`EXAMPLES`, one that retrieves only with a pool."""
        if examples not in EXAMPLES:
            choices = ", ".join(EXAMPLES)
            raise RaitError(f"examples must be None, one of {choices} or a list of records, not {examples!r}")
        if examples != "none" and self.pool is None:
            raise RaitError(f"examples={examples!r} needs a pool: NER.from_pretrained(..., pool=...)")
        return examples

    def _examples_for(self, texts: list[str], examples) -> list[list[Record]]:
        examples = self.examples if examples is None else examples
        if isinstance(examples, str) and self._mode(examples) == "none":
            return [[] for _ in texts]
        if isinstance(examples, str):
            mode = self.pool_mode if examples == "pool" else examples
            retriever = example_retriever(
                mode, self.pool, k=self.k, bm25_threshold=self.bm25_threshold, seed=self.seed
            )
            return retriever([Record(f"query-{i}", text) for i, text in enumerate(texts)])
        return [list(examples) for _ in texts]

    def _extract_batch(self, texts: list[str], types: list[tuple[str, ...]], examples) -> list[Extraction]:
        shown = self._examples_for(texts, examples)
        queries = [
            PassageQuery(text, text_types, tuple(ex), self.lang or detect_lang(text))
            for text, text_types, ex in zip(texts, types, shown, strict=True)
        ]
        results = []
        for index, chunked, answers in self.answerer.iter_chunk_answers(queries):
            query = queries[index]
            parts = []
            for chunk, chunk_answers in zip(chunked.queries, answers, strict=True):
                entities, bad = entities_from_answers(chunk.text, query.types, chunk_answers)
                parts.append(Extraction(entities, [(0, len(chunk.text))], bad, len(query.examples)))
            extraction = Extraction.joined(chunked.spans, parts)
            self.n_queries += len(query.types) * len(chunked.queries)
            self.n_malformed += extraction.n_malformed
            self.n_chunked += extraction.chunked
            results.append(extraction)
        return results


def model_defaults(
    saved: dict, decoding: str | None, threshold: float | None, multi_label: bool | None
) -> tuple[str, float | None, bool]:
    """The decoding, threshold and multi_label a model is used with: each as given unless None, else the
    model's saved one (``saved``: :func:`rait.hub.saved_settings`), else rait's default; checked."""
    decoding = decoding or saved.get("decoding") or DEFAULT_DECODING
    threshold = check_threshold(saved.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold)
    multi_label = saved.get("multi_label", DEFAULT_MULTI_LABEL) if multi_label is None else multi_label
    return decoding, threshold, check_multi_label(multi_label)


def _checked_texts(texts) -> list[str]:
    """``texts`` as a list of strings; TypeError or ValueError saying what is wrong with them."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a string (predict_entities takes one text)")
    if isinstance(texts, bytes | bytearray) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a list of strings, not {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a string, not {type(text).__name__}")
        check_unicode(text, f"texts[{i}]")
    return texts


def check_unicode(value: str, what: str) -> None:
    """ValueError for a string the tokenizer cannot take: a lone UTF-16 surrogate (from broken decoding)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate at character {exc.start})") from None


def _split_adapter(model: str | None) -> tuple[str | None, str | None]:
    """``(base model, adapter dir)`` of a model argument that may be an adapter dir."""
    from rait.models import adapter_base_model, is_adapter_dir

    return (adapter_base_model(model), model) if is_adapter_dir(model) else (model, None)


def _types_per_text(types, n_texts: int) -> list[tuple[str, ...]]:
    """One tuple of types per text from a shared list or a list of lists."""
    if isinstance(types, str) or types is None:
        what = "a string" if types is not None else "None"
        raise RaitError(f"types must be a list of type names (or one list per text), not {what}")
    types = list(types)
    if all(isinstance(t, str) for t in types):
        return [tuple(dict.fromkeys(types))] * n_texts  # a repeated type is asked once
    if len(types) != n_texts:
        raise RaitError(f"got {len(types)} lists of types for {n_texts} texts")
    per_text = []
    for entry in types:
        if entry is None or isinstance(entry, str) or not all(isinstance(t, str) for t in entry):
            what = "None" if entry is None else "a string" if isinstance(entry, str) else repr(entry)
            raise RaitError(f"types must be a list of type names, or one such list per text, not {what}")
        per_text.append(tuple(dict.fromkeys(entry)))
    return per_text


def _embedder(embedder, lang: str | None = None):
    """An Embedder for a name (:func:`rait.retrieval.get_embedder`); an Embedder or None unchanged."""
    return get_embedder(embedder, lang or "en") if isinstance(embedder, str) else embedder


def _as_pool(pool, lang: str | None, embedder=None):
    """An ExamplePool from a pool, a list of records, or a training file / registered source name."""
    embedder = _embedder(embedder, lang)

    if hasattr(pool, "retrieve"):
        return pool
    if isinstance(pool, str | Path):
        return ExamplePool.from_source(str(pool), embedder, lang=lang)
    records = list(pool)
    if not all(isinstance(r, Record) for r in records):
        raise RaitError("pool must be an ExamplePool, a list of Record, or a training file / source name")
    return ExamplePool(records, embedder, lang=lang or detect_lang(" ".join(r.text for r in records[:50])))
