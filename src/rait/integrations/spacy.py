"""The spaCy component ``rait_ner`` (``pip install 'rait[spacy]'``): open NER with a rait model in any spaCy
pipeline, ``spacy.blank("en")`` and ``spacy.blank("zh")`` included.

>>> nlp = spacy.blank("en")  # doctest: +SKIP
>>> nlp.add_pipe("rait_ner", config={"types": ["person", "location"]})  # doctest: +SKIP
>>> [(e.text, e.label_) for e in nlp("Barack Obama was born in Honolulu.").ents]  # doctest: +SKIP
[('Barack Obama', 'person'), ('Honolulu', 'location')]

spaCy finds the factory through its ``spacy_factories`` entry point, so no import is needed. Each entity
becomes a span by :meth:`spacy.tokens.Doc.char_span` with ``alignment_mode="expand"`` (a mention that ends
inside a token takes the whole token). ``doc.spans["rait"]`` (``spans_key``) holds every span, overlapping
ones and one span per type included; ``doc.ents`` one type per span, overlaps resolved by keeping the best:
the higher ``score`` when entities carry one, else the longer span, else the earlier. ``span._.score`` is the
entity's score (None when the model gives none). ``nlp.pipe`` sends ``batch_size`` texts at a time to
:meth:`rait.NER.batch_predict_entities`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from rait.errors import RaitError, require

spacy = require("spacy", "spacy")
from spacy.language import Language  # noqa: E402
from spacy.tokens import Doc, Span  # noqa: E402

FACTORY = "rait_ner"
SPANS_KEY = "rait"
SCORE_ATTR = "score"
_SCORE_KEY = "rait_score"  # doc.user_data key prefix: scores are per (start, end, label)
LANGS = ("en", "zh")  # template languages: other pipelines detect each text's language


def _span_score(span: Span) -> float | None:
    return span.doc.user_data.get((_SCORE_KEY, span.start_char, span.end_char, span.label_))


if not Span.has_extension(SCORE_ATTR):
    Span.set_extension(SCORE_ATTR, getter=_span_score)


@Language.factory(
    FACTORY,
    default_config={
        "types": [],
        "model": None,
        "adapter": None,
        "threshold": None,
        "decoding": None,
        "lang": None,
        "batch_size": 8,
        "device": None,
        "spans_key": SPANS_KEY,
    },
    assigns=["doc.ents", "doc.spans", f"span._.{SCORE_ATTR}"],
)
def make_rait_ner(
    nlp: Language,
    name: str,
    types: list[str],
    model: str | None,
    adapter: str | None,
    threshold: float | None,
    decoding: str | None,
    lang: str | None,
    batch_size: int,
    device: str | None,
    spans_key: str,
) -> RaitNER:
    """The ``rait_ner`` component: ``model`` / ``adapter`` as for :meth:`rait.NER.from_pretrained` (None: the
    built-in model); ``lang`` None: the pipeline's language when rait has templates for it, else detected per
    text; ``decoding`` None: the model's."""
    import rait

    options = {"adapter": adapter, "lang": lang or (nlp.lang if nlp.lang in LANGS else None)}
    if decoding is not None:
        options["decoding"] = decoding
    if device is not None:
        options["device"] = device
    ner = rait.NER.from_pretrained(model, **options)
    return RaitNER(ner, types, threshold=threshold, batch_size=batch_size, spans_key=spans_key, name=name)


class RaitNER:
    """Sets ``doc.spans[spans_key]`` and ``doc.ents`` from a :class:`rait.NER` (``ner``, replaceable) asked
    about ``types``; ``threshold`` drops entities whose ``score`` is below it."""

    def __init__(
        self,
        ner,
        types: Sequence[str],
        *,
        threshold: float | None = None,
        batch_size: int = 8,
        spans_key: str = SPANS_KEY,
        name: str = FACTORY,
    ):
        if isinstance(types, str) or not types or not all(isinstance(t, str) and t for t in types):
            raise RaitError(f'{name}: config "types" must be a non-empty list of entity type names')
        if batch_size < 1:
            raise RaitError(f'{name}: config "batch_size" must be at least 1, not {batch_size}')
        self.ner = ner
        self.types = list(types)
        self.threshold = threshold
        self.batch_size = batch_size
        self.spans_key = spans_key
        self.name = name

    def __call__(self, doc: Doc) -> Doc:  # entities at its threshold, every type: the component chooses
        found = self.ner.predict_entities(
            doc.text, self.types, threshold=self.threshold or 0, multi_label=True
        )
        return self._set(doc, found)

    def pipe(self, docs: Iterable[Doc], batch_size: int = 1000) -> Iterator[Doc]:
        """``batch_size`` (``nlp.pipe``'s) docs at a time to :meth:`rait.NER.batch_predict_entities`, which
        runs the model on the component's ``batch_size`` texts at a time."""
        batch: list[Doc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == batch_size:
                yield from self._predict_batch(batch)
                batch = []
        if batch:
            yield from self._predict_batch(batch)

    def _predict_batch(self, docs: list[Doc]) -> Iterator[Doc]:
        texts = [doc.text for doc in docs]
        found = self.ner.batch_predict_entities(
            texts, self.types, batch_size=self.batch_size, threshold=self.threshold or 0, multi_label=True
        )
        for doc, entities in zip(docs, found, strict=True):
            yield self._set(doc, entities)

    def _set(self, doc: Doc, entities: list[dict]) -> Doc:
        spans: list[Span] = []
        ranks: dict[Span, tuple] = {}
        for order, entity in enumerate(entities):
            score = entity.get("score")
            if self.threshold is not None and score is None:
                raise RaitError(f'{self.name}: config "threshold" needs entity scores; this model gives none')
            start, end = entity.get("start"), entity.get("end")
            if start is None or end is None or self.threshold is not None and score < self.threshold:
                continue  # not in the text (free decoding), or below the threshold
            span = doc.char_span(start, end, label=entity["type"], alignment_mode="expand")
            if span is None or span in ranks:
                continue
            if score is not None:
                doc.user_data[(_SCORE_KEY, span.start_char, span.end_char, span.label_)] = float(score)
            spans.append(span)
            ranks[span] = (-(score if score is not None else 0.0), -len(span.text), span.start_char, order)
        doc.spans[self.spans_key] = spans
        kept: list[Span] = []
        taken: set[int] = set()
        for span in sorted(spans, key=ranks.__getitem__):
            tokens = set(range(span.start, span.end))
            if not tokens & taken:
                kept.append(span)
                taken |= tokens
        doc.ents = sorted(kept, key=lambda s: s.start)
        return doc
