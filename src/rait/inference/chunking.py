"""Long passages: split on sentence boundaries into chunks that fit the model's context, answer each chunk,
and merge the answers.

The budget is counted in the model's tokens: a chunk's prompt (examples turn, passage turn, the longest
type question) plus ``max_new_tokens`` must fit the context, and a chunk is at most ``max_chunk_tokens``
long. Sentences are packed greedily; a sentence longer than the budget is cut at token boundaries
(preferably before a space) into windows that overlap by ``overlap_tokens``, so a mention cut at one
window's edge is whole in the next. A passage that fits is one chunk and is answered exactly as before.

:class:`ChunkedAnswerer` wraps any :class:`rait.inference.answerer.Answerer` with a tokenizer: it yields, per
passage, one answer per type (for a chunked passage, the JSON list of the mentions of all chunks whose answer
parsed). :func:`merge_chunk_entities` merges entities located in each chunk, with offsets in the passage.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from rait.answers import format_answer
from rait.errors import RaitError
from rait.inference.answerer import Answerer, PassageQuery
from rait.inference.entities import answer_mentions, answer_scores
from rait.inference.stopping import with_finish_reason

logger = logging.getLogger(__name__)

DEFAULT_MAX_CHUNK_TOKENS = 1024
DEFAULT_OVERLAP_TOKENS = 32
MIN_CHUNK_TOKENS = 16

# A sentence ends after ., !, ?, ; or ellipsis (with closing quotes/brackets) followed by space, after a CJK
# full stop / exclamation / question mark / semicolon, or at a line break.
_SENTENCE_END = re.compile(r"""[.!?;…]+["'”’)\]]*(?=\s)|[。！？；]+["'”’）」』]*|\n+""")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``, without surrounding whitespace, in order."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    stripped = []
    for s, e in spans:
        piece = text[s:e]
        if piece.strip():
            s += len(piece) - len(piece.lstrip())
            e -= len(piece) - len(piece.rstrip())
            stripped.append((s, e))
    return stripped


def _token_counts(tokenizer, pieces: list[str], group: int = 512) -> list[int]:
    counts: list[int] = []
    for start in range(0, len(pieces), group):  # in groups: a 10 MB text's ids never all in memory
        counts += [
            len(ids)
            for ids in tokenizer(pieces[start : start + group], add_special_tokens=False)["input_ids"]
        ]
    return counts


def _offsets(tokenizer, piece: str) -> list[tuple[int, int]]:
    if getattr(tokenizer, "is_fast", False):
        return tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [(i, i + 1) for i in range(len(piece))]  # a slow tokenizer has no offsets: an estimate


def _at_word(text: str, at: int) -> bool:
    """Whether a token starting at ``at`` starts a word (byte-level BPE tokens carry their leading space)."""
    return text[at - 1 : at].isspace() or text[at : at + 1].isspace()


def _windows(tokenizer, text: str, start: int, end: int, budget: int, overlap: int) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` (over ``budget`` tokens) into windows of at most ``budget`` tokens that
    overlap by about ``overlap`` tokens, each ending before a space where one is in its second half and the
    next starting at a word where one is in the overlap. The text is tokenized a segment at a time, so
    memory stays bounded however long it is."""
    size = max(budget - 2, 1)  # a window tokenized alone may merge its edges differently
    overlap = min(overlap, size // 4)
    segment_chars = 64 * size
    windows: list[tuple[int, int]] = []
    pos = start
    while True:
        seg_end = min(end, pos + segment_chars)
        offsets = _offsets(tokenizer, text[pos:seg_end])
        n, i, emitted = len(offsets), 0, False
        starts = [_at_word(text, pos + offset[0]) for offset in offsets]

        while True:
            j = min(i + size, n)
            if j == n and seg_end < end:  # the segment ends inside this window: continue from its start
                break
            if j < n:
                j = next((k for k in range(j, i + size // 2, -1) if starts[k]), j)
            ws, we = pos + offsets[i][0], pos + offsets[j - 1][1]
            window = text[ws:we]
            windows.append((ws + len(window) - len(window.lstrip()), ws + len(window.rstrip())))
            emitted = True
            if j == n:
                return windows
            i = max(j - overlap, i + 1)
            i = next((k for k in range(i, j) if starts[k]), i)  # the next window starts at a word
        if emitted:
            pos += offsets[i][0]
        else:  # tokens of over 64 characters: take a longer segment
            segment_chars *= 2


def chunk_spans(
    text: str, tokenizer, budget: int, overlap: int = DEFAULT_OVERLAP_TOKENS
) -> list[tuple[int, int]]:
    """Character spans of the chunks of ``text``: whole sentences packed up to ``budget`` tokens (a longer
    sentence is cut into overlapping windows). ``[(0, len(text))]`` when the passage fits."""
    if budget < 1:
        raise RaitError(f"chunk budget must be at least 1 token, not {budget}")
    # a token rarely spans 16+ characters: much longer texts and sentences are not tokenized whole (10 MB)
    if len(text) <= 16 * budget and _token_counts(tokenizer, [text])[0] <= budget:
        return [(0, len(text))]
    sentences = sentence_spans(text)
    short = [(s, e) for s, e in sentences if e - s <= 16 * budget]  # longer ones go to windows uncounted
    counts = dict(zip(short, _token_counts(tokenizer, [text[s:e] for s, e in short]), strict=True))
    pieces: list[tuple[int, int, int]] = []  # (start, end, tokens)
    for s, e in sentences:
        count = counts.get((s, e), budget + 1)
        if count <= budget:
            pieces.append((s, e, count))
        else:
            windows = _windows(tokenizer, text, s, e, budget, overlap)
            pieces += [(ws, we, budget) for ws, we in windows]
    chunks: list[tuple[int, int]] = []
    current: tuple[int, int, int] | None = None
    for s, e, count in pieces:
        # +1 per join: the space between two sentences can become a token of its own
        if current is not None and current[2] + count + 1 <= budget:
            current = (current[0], e, current[2] + count + 1)
        else:
            if current is not None:
                chunks.append(current[:2])
            current = (s, e, count)
    if current is not None:
        chunks.append(current[:2])
    return chunks


def context_length(answerer) -> int | None:
    """The model's context window in tokens, or ``None`` when it cannot be told."""
    config = getattr(getattr(answerer, "model", None), "config", None)
    value = getattr(config, "max_position_embeddings", None)
    if value is None and hasattr(answerer, "llm"):  # vLLM
        value = getattr(getattr(answerer.llm.llm_engine, "model_config", None), "max_model_len", None)
    return int(value) if value else None


@dataclass(frozen=True, slots=True)
class ChunkedQuery:
    """A passage's chunks: character spans into the passage, and one query per chunk."""

    spans: tuple[tuple[int, int], ...]
    queries: tuple[PassageQuery, ...]


class ChunkedAnswerer(Answerer):
    """An answerer that splits passages too long for ``answerer``'s context or ``max_chunk_tokens`` into
    sentence chunks (see the module docs). ``n_chunked`` / ``n_chunks`` count the passages split and the
    chunks they became."""

    def __init__(
        self,
        answerer: Answerer,
        max_chunk_tokens: int | None = DEFAULT_MAX_CHUNK_TOKENS,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    ):
        if max_chunk_tokens is not None and max_chunk_tokens < MIN_CHUNK_TOKENS:
            raise RaitError(f"max_chunk_tokens must be at least {MIN_CHUNK_TOKENS}, not {max_chunk_tokens}")
        self.inner = answerer
        self.tokenizer = answerer.tokenizer
        self.lang = answerer.lang
        self.max_chunk_tokens = max_chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.context = context_length(answerer)
        self.n_chunked = 0
        self.n_chunks = 0

    def budget(self, query: PassageQuery) -> int:
        """Most passage tokens a chunk of ``query`` may have."""
        limits = [self.max_chunk_tokens] if self.max_chunk_tokens else []
        if self.context:
            prefix, suffixes = self.inner._token_ids(self.tokenizer, replace(query, text=""))
            reserve = len(prefix) + max(map(len, suffixes), default=0)
            limits.append(self.context - reserve - getattr(self.inner, "max_new_tokens", 0))
        if not limits:
            return 1 << 62
        return max(min(limits), MIN_CHUNK_TOKENS)

    def spans(self, query: PassageQuery) -> list[tuple[int, int]]:
        """Character spans of the chunks of one passage (``[(0, len(text))]`` when it fits)."""
        return chunk_spans(query.text, self.tokenizer, self.budget(query), self.overlap_tokens)

    def split(self, query: PassageQuery) -> ChunkedQuery:
        """The chunks of one passage (one chunk, the query itself, when it fits)."""
        spans = self.spans(query)
        if len(spans) == 1:
            return ChunkedQuery(((0, len(query.text)),), (query,))
        self.n_chunked += 1
        self.n_chunks += len(spans)
        logger.info(
            "passage of %d characters is longer than %d tokens: split into %d chunks",
            len(query.text),
            self.budget(query),
            len(spans),
        )
        return ChunkedQuery(tuple(spans), tuple(replace(query, text=query.text[s:e]) for s, e in spans))

    def iter_chunk_answers(
        self, queries: Sequence[PassageQuery]
    ) -> Iterator[tuple[int, ChunkedQuery, list[list[str]]]]:
        """Yield ``(index, chunks, answers per chunk, one per type)`` for every passage, in input order."""
        split = [self.split(query) for query in queries]
        flat = [(index, q) for index, chunked in enumerate(split) for q in chunked.queries]
        answers: list[list[str]] = []
        pending = 0
        for _, chunk_answers in self.inner.iter_answers([q for _, q in flat]):
            answers.append(chunk_answers)
            while pending < len(split) and len(answers) >= len(split[pending].queries):
                count = len(split[pending].queries)
                yield pending, split[pending], answers[:count]
                del answers[:count]
                pending += 1

    def iter_answers(self, queries: Sequence[PassageQuery]) -> Iterator[tuple[int, list[str]]]:
        for index, _, answers in self.iter_chunk_answers(queries):
            yield index, merge_chunk_answers(answers, len(queries[index].types))


def with_chunking(answerer: Answerer, max_chunk_tokens: int | None = DEFAULT_MAX_CHUNK_TOKENS) -> Answerer:
    """``answerer`` wrapped in a :class:`ChunkedAnswerer`, unless it has no tokenizer to count with or is
    one already."""
    if isinstance(answerer, ChunkedAnswerer) or getattr(answerer, "tokenizer", None) is None:
        return answerer
    return ChunkedAnswerer(answerer, max_chunk_tokens)


def merge_chunk_answers(answers: list[list[str]], n_types: int) -> list[str]:
    """One answer per type from each chunk's answers: a single chunk's answers unchanged; otherwise the JSON
    list of the mentions of every chunk whose answer parsed (first-seen order), or the first chunk's raw
    answer when none parsed (so it counts once as malformed)."""
    if len(answers) == 1:
        return answers[0]
    merged = []
    for t in range(n_types):
        mentions: dict[str, float | None] = {}
        parsed = scored = False
        for chunk in answers:
            found, ok = answer_mentions(chunk[t])
            scores = answer_scores(chunk[t])
            parsed |= ok
            scored |= scores is not None
            for mention, score in zip(found, scores or [None] * len(found), strict=True):
                best = mentions.get(mention)
                mentions[mention] = score if best is None or score is not None and score > best else best
        text = format_answer(mentions) if parsed else answers[0][t]
        scores = [1.0 if s is None else s for s in mentions.values()] if scored and parsed else None
        merged.append(with_finish_reason(text, [chunk[t] for chunk in answers], scores))
    return merged


def merge_chunk_entities(chunk_entities: list[tuple[int, list[dict]]]) -> list[dict]:
    """Entities of a passage from ``(chunk start, entities located in that chunk)`` pairs: offsets shifted
    into the passage, the same span of a type kept once (with its best score), a span inside a longer span
    of the same type dropped (a mention cut at a window edge), a not-found mention kept once per type.
    Sorted like :func:`rait.inference.entities.entities_from_answers`."""
    spans: dict[tuple[str, int, int], dict] = {}
    missing: dict[tuple[str, str], dict] = {}
    for offset, entities in chunk_entities:
        for entity in entities:
            if entity["found"]:
                shifted = {**entity, "start": entity["start"] + offset, "end": entity["end"] + offset}
                kept = spans.setdefault((entity["type"], shifted["start"], shifted["end"]), shifted)
                if entity.get("score") is not None and entity["score"] > kept["score"]:
                    kept["score"] = entity["score"]
            else:
                missing.setdefault((entity["type"], entity["text"]), entity)
    kept, reach = [], {}  # reach: the furthest end of a kept span of each type so far
    for (entity_type, _, end), entity in sorted(spans.items(), key=lambda item: (item[0][1], -item[0][2])):
        if end > reach.get(entity_type, -1):
            kept.append(entity)
            reach[entity_type] = end
    found_texts = {(e["type"], e["text"]) for e in kept}
    entities = kept + [e for key, e in missing.items() if key not in found_texts]
    entities.sort(key=lambda e: (not e["found"], e["start"] or 0, -(e["end"] or 0)))
    return entities
