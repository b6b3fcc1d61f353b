"""The greedy decoding loop of :class:`rait.inference.transformers.Predictor`: fewer model calls than one
per token.

Every answer is exactly the one a loop that calls the model once per token would give; three things save
calls:

- **drafts** (prompt-lookup speculative decoding): an answer mostly copies the passage, so after each token
  a row proposes the tokens that followed the last few tokens where they last occurred in its prompt or its
  own answer; the next forward feeds them all, and they are kept while they equal the token the model (and
  the copy constraint) chooses at each position -- the first one that differs is replaced by the chosen
  token. Drafts cost compute, so a forward feeds at most :data:`DRAFT_BUDGET` tokens: a large batch gets
  none, a single passage's rows up to :data:`MAX_DRAFT` each;
- **forced tokens** (jump-forward, constrained decoding only): where the copy constraint leaves a single
  token outside a string, e.g. the end token after ``]``, it is appended without asking the model, its
  cache filled by the next forward (an end token needs none: the row ends);
- **end branches**: inside a mention drafted from the passage, the separator ``", "`` is also fed as a
  branch after each of the first :data:`MAX_ENDS` drafted word ends, each seeing the row up to its end
  only (a tree-shaped attention mask). Where the model closes the mention there and writes the separator,
  the branch's scores choose the next mention's first token: one forward fewer per further mention.

A fourth thing saves whole rows where the caller keeps only confident answers: ``drop(row)`` says, after each
token, whether whatever the row goes on to write would be thrown away (its score, fixed at the answer's first
choice point, is below the caller's threshold); such a row ends there, ``dropped``.

Rows feed different numbers of tokens per forward: each row's are left-aligned and the slots after them
masked (with end branches, a tree-shaped mask); slots of rejected drafts and branches stay in the cache,
masked out, and position ids skip them, so every token sees exactly the context and positions it would see
alone. The model's scores are available at every
position where a token is chosen (only forced tokens are chosen without them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import torch

from rait.inference.stopping import Continuation, repeats_itself

DRAFT_BUDGET = 48  # tokens fed per forward (rows' last tokens plus drafts) beyond which no drafts are fed
MAX_DRAFT = 8  # draft tokens per row and forward, at most
MATCH_MAX = 3  # longest run of last tokens a draft's source must match
SEPARATOR = '", "'  # drafted after a closed string, before the answer has one (prepended to the prompt)
MAX_ENDS = 3  # end branches per row and forward, at most (only where rows get whole drafts)


class Lookup:
    """A row's draft source: where each token occurs in its prompt and answer, and (with ``passage``, the
    passage's JSON-escaped bytes) the bytes it wrote."""

    __slots__ = ("seq", "where", "passage", "written")

    def __init__(self, prompt: Sequence[int], passage: bytes = b""):
        self.seq: list[int] = list(prompt)
        self.where: dict[int, list[int]] = {}
        for index, token in enumerate(self.seq):
            self.where.setdefault(token, []).append(index)
        self.passage = passage
        self.written = b""

    def add(self, token: int, data: bytes | None = None) -> None:
        self.where.setdefault(token, []).append(len(self.seq))
        self.seq.append(token)
        self.written += data or b""

    def draft(self, size: int, encode: Callable[[str], list[int]] | None = None) -> list[int]:
        """Up to ``size`` tokens likely to come next. Inside a string (an odd number of unescaped quotes
        written) whose bytes so far occur in the passage: ``encode`` of the passage text that follows
        them (a mention's first token is written without the space it has in the passage, so its tokens
        are not the passage's). Else the tokens that followed the latest earlier occurrence of the longest
        run (up to :data:`MATCH_MAX`) of the last tokens."""
        if encode is not None and (rest := self._passage_rest()) is not None:
            drafted = encode(rest[: 8 * size].decode("utf-8", "ignore"))[:size]
            if drafted:
                return drafted
        seq, last = self.seq, len(self.seq) - 1
        best, best_len = -1, 0
        for index in reversed(self.where.get(seq[last], ())[-16:]):
            if index == last:
                continue
            length = 1
            while length < MATCH_MAX and index - length >= 0 and seq[index - length] == seq[last - length]:
                length += 1
            if length > best_len:
                best, best_len = index, length
                if length == MATCH_MAX:
                    break
        return seq[best + 1 : best + 1 + size] if best >= 0 else []

    def _passage_rest(self) -> bytes | None:
        """Inside a string (an odd number of unescaped quotes written) whose bytes so far occur in the
        passage: the passage bytes that follow them (from the first occurrence); else None."""
        written = self.written
        start = written.rfind(b'"')
        if not self.passage or start < 0 or (written.count(b'"') - written.count(b'\\"')) % 2 == 0:
            return None
        content = written[start + 1 :]
        at = self.passage.find(content) if content else -1
        return None if at < 0 else self.passage[at + len(content) :]

    def ends(self, draft: Sequence[int], token_bytes: Sequence[bytes | None], limit: int) -> list[int]:
        """The first ``limit`` counts ``i`` of ``draft`` tokens after which the string being written (inside
        a string whose bytes occur in the passage) would end at a word boundary of the passage: the
        passage byte that follows is not a letter or digit. The string is never empty there."""
        rest = self._passage_rest() if limit > 0 else None
        if rest is None:
            return []
        offset, found = 0, []
        for i in range(len(draft) + 1):
            if i:
                data = token_bytes[draft[i - 1]] if draft[i - 1] < len(token_bytes) else None
                if not data or rest[offset : offset + len(data)] != data:
                    break
                offset += len(data)
            after = rest[offset : offset + 1]
            if not after or not (after.isalnum() or after[0] >= 0x80):
                found.append(i)
                if len(found) == limit:
                    break
        return found


class Row:
    """One decoded row: its answer so far, tokens chosen but not yet in the cache, and its state."""

    __slots__ = ("out", "pending", "pos", "lookup", "finished", "looped", "dropped")

    def __init__(self, prompt: Sequence[int], pos: int, passage: bytes = b""):
        self.out: list[int] = []
        self.pending: list[int] = []
        self.pos = pos  # position id of the first pending token
        self.lookup = Lookup(prompt, passage)
        self.finished = False
        self.looped = False
        self.dropped = False


class Decoder:
    """Greedy decoding of a batch of rows (see the module doc). ``forward(ids, mask, positions, cache,
    select)`` runs the model on the fed tokens and returns the scores at the flat positions ``select``.
    ``guide``: the rows' copy constraint (:class:`rait.inference.constrained.ConstrainedRows`) or None
    (free decoding, where a row also ends once it repeats itself, if ``stop_repetition``). ``draft_budget``
    0 and ``jump_forward`` False make it the plain loop, one model call per token.
    ``observe(row, token, scores)`` sees every token written with the scores it was chosen from (None for a
    forced token); ``token_bytes`` and ``encode`` (the tokenizer's) let drafts come from the passage.
    ``drop(row)``: whether the row can end now because the caller will discard its answer (see the module
    doc); its continuation's finish reason is then ``dropped``. ``mask_dtype`` (the model's): end branches
    are fed (with an additive attention mask of that dtype) where given and drafts are on."""

    def __init__(
        self,
        forward: Callable,
        max_new_tokens: int,
        stop_ids: frozenset[int],
        stop_repetition: bool,
        guide=None,
        draft_budget: int = DRAFT_BUDGET,
        jump_forward: bool = True,
        token_bytes: Sequence[bytes | None] = (),
        encode: Callable[[str], list[int]] | None = None,
        observe: Callable[[int, int, torch.Tensor | None], None] | None = None,
        drop: Callable[[int], bool] | None = None,
        mask_dtype: torch.dtype | None = None,
    ):
        self.forward = forward
        self.cap = max_new_tokens
        self.stop_ids = stop_ids
        self.stop_repetition = stop_repetition and guide is None
        self.guide = guide
        self.draft_budget = draft_budget
        self.jump_forward = jump_forward
        self.token_bytes = token_bytes
        self.encode = encode
        self.observe = observe
        self.drop = drop
        self.mask_dtype = mask_dtype
        self.separator: list[int] = []

    def run(
        self,
        first_logits: torch.Tensor,
        cache,
        mask: torch.Tensor,
        next_pos: torch.Tensor,
        prompts: Sequence[Sequence[int]],
        passages: Sequence[str] | None = None,
        branches: Sequence[int] = (),
    ) -> list[Continuation]:
        """Decode every row from the scores after its prompt and after each of ``branches``
        (``first_logits`` ``[rows, 1 + len(branches), vocab]``, :func:`rait.inference.prefill.prefill`):
        where a row's first token is a branch's, the branch's slot (one of the mask's last
        ``len(branches)``) is kept and its scores choose the second token. The prompts are in ``cache``,
        their valid slots in ``mask``; ``next_pos``: each row's next position id; ``prompts``: each row's
        prompt tokens (the drafts' source)."""
        dev = mask.device
        escaped = {text: _escaped(text) for text in dict.fromkeys(passages or ())}
        sources = [escaped[text] for text in passages] if passages and self.encode else [b""] * len(prompts)
        hint = self.encode(SEPARATOR) if self.encode else []
        self.separator = hint if self.mask_dtype is not None and self.token_bytes else []
        rows = [
            Row([*hint, *prompt], pos, source)
            for prompt, pos, source in zip(prompts, next_pos.tolist(), sources, strict=True)
        ]
        active = list(range(len(rows)))  # the row of each batch row
        mask = self._first(rows, first_logits, mask, list(branches))
        while True:
            if all(self._done(rows[r]) for r in active):
                break
            if sum(self._done(rows[r]) for r in active) * 4 >= len(active):  # drop done rows at a quarter
                keep = [b for b, r in enumerate(active) if not self._done(rows[r])]
                index = torch.tensor(keep, device=dev)
                cache.batch_select_indices(index)
                mask = mask[index]
                active = [active[b] for b in keep]
            mask = _trim(mask, cache)
            feeds, drafts, ends = self._feeds([rows[r] for r in active], active)
            width = max(len(feed) for feed in feeds)
            sep = len(self.separator)
            ids = torch.zeros((len(active), width), dtype=torch.long)
            fed = torch.zeros((len(active), width), dtype=mask.dtype)
            positions = torch.zeros((len(active), width), dtype=torch.long)
            select: list[int] = []
            lines = []  # per batch row: its pending tokens and drafts, fed before its branches
            for b, (row_index, feed) in enumerate(zip(active, feeds, strict=True)):
                ids[b, : len(feed)] = torch.tensor(feed)
                fed[b, : len(feed)] = 1
                pos = rows[row_index].pos
                positions[b] = torch.arange(pos, pos + width)
                line = len(feed) - len(ends[b]) * sep
                select.extend(range(b * width + line - len(drafts[b]) - 1, b * width + line))
                pending = line - len(drafts[b])
                for a, end in enumerate(ends[b]):  # each branch at the position after its end
                    slot = line + a * sep
                    positions[b, slot : slot + sep] = torch.arange(
                        pos + pending + end, pos + pending + end + sep
                    )
                    select.extend(range(b * width + slot, b * width + slot + sep))
                lines.append(line)
            grown = torch.cat([mask, fed.to(dev)], dim=1)
            attention = grown
            if any(ends):
                attention = self._tree_mask(mask, feeds, drafts, ends, lines, width).to(dev)
            logits = self.forward(
                ids.to(dev), attention, positions.to(dev), cache, torch.tensor(select, device=dev)
            )
            mask = grown
            greedy = _top(logits).tolist()
            kept, start = [], 0
            for b, row_index in enumerate(active):
                n, branched = len(drafts[b]) + 1, len(ends[b]) * sep
                row = rows[row_index]
                pending = lines[b] - len(drafts[b])
                accepted = self._verify(
                    row, row_index, drafts[b], logits[start : start + n], greedy[start : start + n]
                )
                slots = list(range(pending + accepted))
                if accepted in ends[b]:
                    at = start + n + ends[b].index(accepted) * sep
                    used = self._branch(row, row_index, logits[at : at + sep], greedy[at : at + sep])
                    slot = lines[b] + ends[b].index(accepted) * sep
                    slots += range(slot, slot + used)
                kept.append(slots)
                start += n + branched
            block = torch.zeros((len(active), width), dtype=mask.dtype)
            for b, slots in enumerate(kept):
                block[b, slots] = 1
            mask[:, mask.shape[1] - width :] = block.to(dev)
            for b, row_index in enumerate(active):
                rows[row_index].pos += len(kept[b])
        return [Continuation(row.out, _reason(row)) for row in rows]

    def _first(self, rows: list[Row], scores: torch.Tensor, mask: torch.Tensor, branches: list[int]):
        """Choose each row's first token, and its second where the first is a branch's (that branch is a
        confirmed draft); returns ``mask`` with the other branches' slots masked out."""
        width = mask.shape[1]
        keep = torch.zeros((len(rows), len(branches)), dtype=mask.dtype)
        for row_index, top in enumerate(_top(scores[:, 0]).tolist()):
            row = rows[row_index]
            picked = [0, 1 + branches.index(top)] if top in branches else [0]
            drafts = [top] if len(picked) > 1 else []
            greedy = _top(scores[row_index, picked]).tolist()
            if self._verify(row, row_index, drafts, scores[row_index, picked], greedy):
                keep[row_index, picked[1] - 1] = 1
                row.pos += 1
        if branches:
            mask = mask.clone()
            mask[:, width - len(branches) :] = keep.to(mask.device)
        return mask

    def _feeds(
        self, rows: list[Row], indices: list[int]
    ) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
        """Each batch row's fed tokens (pending, drafts, then the separator once per end branch), drafts and
        end branches (the number of drafts after each; :meth:`Lookup.ends`); a done row feeds a dummy
        token."""
        budget = max(0, self.draft_budget - sum(len(row.pending) for row in rows))
        size = min(MAX_DRAFT, budget // max(len(rows), 1))
        feeds, drafts, ends = [], [], []
        for row, row_index in zip(rows, indices, strict=True):
            draft: list[int] = []
            found: list[int] = []
            room = self.cap - len(row.out)
            done = self._done(row)
            if not done and size:
                draft = row.lookup.draft(min(size, room), self.encode)
                if draft and self.guide is not None:
                    draft = self.guide.admissible(row_index, draft, room)
                if self.separator and size == MAX_DRAFT:
                    found = row.lookup.ends(draft, self.token_bytes, MAX_ENDS)
            feeds.append([0] if done else row.pending + draft + self.separator * len(found))
            drafts.append(draft)
            ends.append(found)
        return feeds, drafts, ends

    def _tree_mask(
        self,
        mask: torch.Tensor,
        feeds: list[list[int]],
        drafts: list[list[int]],
        ends: list[list[int]],
        lines: list[int],
        width: int,
    ) -> torch.Tensor:
        """The additive attention mask ``[rows, 1, width, slots + width]`` of a forward with end branches:
        the valid cache slots (``mask``), the row's pending tokens and drafts causally, and each branch the
        row up to its end and its own earlier tokens."""
        rows, slots = mask.shape
        sep = len(self.separator)
        allowed = torch.zeros((rows, width, slots + width), dtype=torch.bool)
        allowed[:, :, :slots] = mask.bool().cpu()[:, None, :]
        for b, feed in enumerate(feeds):
            line = lines[b]
            allowed[b, :line, slots : slots + line] = torch.ones((line, line), dtype=torch.bool).tril()
            pending = line - len(drafts[b])
            for a, end in enumerate(ends[b]):
                first = line + a * sep
                allowed[b, first : first + sep, slots : slots + pending + end] = True
                own = torch.ones((sep, sep), dtype=torch.bool).tril()
                allowed[b, first : first + sep, slots + first : slots + first + sep] = own
            for q in range(len(feed), width):  # padding sees itself only
                allowed[b, q, slots + q] = True
        additive = torch.zeros(allowed.shape, dtype=self.mask_dtype)
        return additive.masked_fill_(~allowed, torch.finfo(self.mask_dtype).min)[:, None]

    def _verify(
        self, row: Row, row_index: int, drafts: list[int], scores: torch.Tensor, greedy: list[int]
    ) -> int:
        """Choose the row's tokens at the fed positions (``scores``, ``greedy``: the model's, one per draft
        and one more) while they confirm the drafts; the first chosen token that differs becomes pending.
        Returns the number of drafts kept."""
        row.pending = []
        for j, top in enumerate(greedy):
            if self._done(row):
                return j
            token = self._choose(row, row_index, top, scores[j])
            if self._done(row):
                return j
            if j < len(drafts) and token == drafts[j]:
                continue
            row.pending = [token]
            if self.guide is not None and self.jump_forward:
                self._jump_forward(row, row_index)
            return j
        return len(drafts)

    def _branch(self, row: Row, row_index: int, scores: torch.Tensor, greedy: list[int]) -> int:
        """Go on through the end branch fed where the row's drafts stopped, when the tokens chosen there
        (pending) start the separator: choose the next token at each branch position while it is the
        separator's next; the first other becomes pending. Returns the branch slots kept (the fed
        tokens written)."""
        separator, count = self.separator, len(row.pending)
        if self._done(row) or not count or row.pending != separator[:count]:
            return 0
        for k in range(count - 1, len(separator)):
            token = self._choose(row, row_index, greedy[k], scores[k])
            if self._done(row):
                return k + 1
            if k + 1 < len(separator) and token == separator[k + 1]:
                continue
            row.pending = [token]
            if self.guide is not None and self.jump_forward:
                self._jump_forward(row, row_index)
            return k + 1
        return len(separator)

    def _done(self, row: Row) -> bool:
        return row.finished or len(row.out) >= self.cap

    def _choose(self, row: Row, row_index: int, top: int, scores: torch.Tensor) -> int:
        """Choose the row's next token given the model's ``top`` token and its ``scores``, and write it; the
        row ends at an end token, in a loop, or where the constraint ends it."""
        token = top
        if self.guide is not None:
            token = self.guide.choose(row_index, top, scores, self.cap - len(row.out))
        if token in self.stop_ids:
            row.finished = True
            return token
        self._write(row, row_index, token, scores)
        if self.drop is not None and self.drop(row_index):
            row.finished = row.dropped = True
        elif self.stop_repetition and repeats_itself(row.out):
            row.finished = row.looped = True
        return token

    def _write(self, row: Row, row_index: int, token: int, scores: torch.Tensor | None) -> None:
        """Append ``token`` to the row's answer; ``observe`` it with the model's ``scores`` it was chosen
        from (None for a forced token)."""
        if self.observe is not None:
            self.observe(row_index, token, scores)
        row.out.append(token)
        row.lookup.add(token, self.token_bytes[token] if token < len(self.token_bytes) else None)

    def _jump_forward(self, row: Row, row_index: int) -> None:
        """Append the tokens the constraint forces after the row's pending token (an end token ends it)."""
        while len(row.out) < self.cap:
            token = self.guide.forced(row_index, self.cap - len(row.out))
            if token is None:
                return
            if token in self.stop_ids:
                row.finished = True
                row.pending = []
                return
            self._write(row, row_index, token, None)
            row.pending.append(token)


def _top(scores: torch.Tensor) -> torch.Tensor:
    """Each row's highest-scoring token, the first among ties (as ``argmax``; ``max`` along a dimension
    returns the same index and is several times faster on bf16 scores on a CPU)."""
    return scores.max(-1).indices


def _reason(row: Row) -> str:
    """Why ``row`` ended (one of :data:`rait.answers.FINISH_REASONS`)."""
    if row.dropped:
        return "dropped"
    return "repetition" if row.looped else "stop" if row.finished else "length"


def _escaped(text: str) -> bytes:
    """``text`` as written inside a JSON string (``json.dumps(..., ensure_ascii=False)``)."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()


def _trim(mask: torch.Tensor, cache) -> torch.Tensor:
    """Crop the cache slots at the end that no row uses (rejected drafts, finished rows' dummies)."""
    used = mask.any(0).nonzero()
    end = int(used[-1]) + 1 if len(used) else 0
    if end < mask.shape[1]:
        cache.crop(end - mask.shape[1])
        return mask[:, :end]
    return mask
