"""The prompt forward of :class:`rait.inference.transformers.Predictor`: every prompt of a batch in one
pass per length bucket, each passage's prefix once.

A passage's questions share its prompt up to the question (the prefix). Each passage becomes one sequence:
its prefix, then every question suffix in turn, with a tree-shaped attention mask -- the prefix is causal,
a suffix sees the prefix and its own earlier tokens, never another suffix -- and position ids that restart
after the prefix for each suffix. So one forward computes the prefix once and every question after it,
exactly as if each (prefix, suffix) prompt ran alone. Passages of similar lengths share a forward
(:func:`buckets`). The cache is then gathered into one row per question: prefix left-padded to the longest
prefix, suffix left-padded after it (pad slots masked out, position ids skipping them), the layout decoding
continues from (:class:`rait.inference.decoding.Decoder`).

*Branches* draft the answer's first token in the same forward: after each suffix, one token per branch (e.g.
``["`` and ``[``, the usual openings of an answer), all at the position after the suffix, each seeing the
prompt and itself only. The scores after a branch are the next token's if the model writes that branch's
token first; the decoder keeps the one it confirms and masks the others' slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

# a forward's fixed cost (weights read, per-layer overhead) in tokens of compute: on a 2-core CPU, bf16, a
# forward of a few rows takes about 70 ms and a prompt token about 0.65 ms (docs/inference.md)
CALL_TOKENS = 96


def buckets(lengths: list[int]) -> list[tuple[int, int]]:
    """Split ascending ``lengths`` into runs ``(start, end)``, each one forward right-padded to its longest,
    at the least cost: a forward costs :data:`CALL_TOKENS` plus its padded tokens."""
    best = [0.0] + [math.inf] * len(lengths)
    cut = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        for start in range(end):
            cost = best[start] + CALL_TOKENS + (end - start) * lengths[end - 1]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    runs, end = [], len(lengths)
    while end:
        runs.append((cut[end], end))
        end = cut[end]
    return runs[::-1]


def prefill(
    forward: Callable,
    cache_factory: Callable,
    prefixes: list[list[int]],
    owner: list[int],
    suffixes: list[list[int]],
    pad_id: int,
    device,
    dtype: torch.dtype,
    start: tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]] | None = None,
    branches: Sequence[int] = (),
):
    """Run the prompts ``prefixes[owner[r]] + suffixes[r]`` (every suffix non-empty). Returns the cache of
    one row per ``r`` (``cache_factory()`` makes an empty one), its valid slots, each row's next position
    id and, per row, the scores after the prompt's last token, then after each of ``branches`` (the tokens
    drafted first, see the module doc; their slots are the row's last, valid in the mask: the decoder
    masks the ones it rejects) -- ``[rows, 1 + len(branches), vocab]``.

    ``forward(ids, mask, positions, cache, select)`` runs the model and returns the scores at the flat
    positions ``select``; ``mask`` is 4-D, added to the attention scores (``dtype``: the model's).
    ``start``: tokens every prompt of the predictor starts with (the system turn and the passage turn's
    opening) and their cache per layer, computed once: when every prefix starts with them they are not run
    again. Its layers grow in place (:mod:`rait.inference.kvcache`), the buckets' too."""
    from rait.inference import kvcache  # imports transformers

    rows_of: dict[int, list[int]] = {}
    for row, prefix in enumerate(owner):
        rows_of.setdefault(prefix, []).append(row)
    passages = list(rows_of)
    head, head_cache = start if start is not None else ([], [])
    if head and any(prefixes[p][: len(head)] != head for p in passages):
        head, head_cache = [], []
    offset, nb = len(head), len(branches)
    total = {p: len(prefixes[p]) - offset + sum(len(suffixes[r]) + nb for r in rows_of[p]) for p in passages}
    passages.sort(key=total.get)
    pwidth = max(len(prefixes[p]) for p in passages)
    swidth = max(len(s) for s in suffixes) + nb
    width = pwidth + swidth
    merged: list[torch.Tensor | None] = []  # per layer: keys, values of every row
    all_scores = None
    for first, end in buckets([total[p] for p in passages]):
        members = passages[first:end]
        length = total[members[-1]]
        span_all = offset + length  # cache slots: the shared start, then this forward's tokens
        ids = torch.full((len(members), length), pad_id, dtype=torch.long)
        positions = torch.zeros((len(members), length), dtype=torch.long)
        allowed = torch.zeros((len(members), length, span_all), dtype=torch.bool)
        allowed[:, :, offset:] = torch.eye(length, dtype=torch.bool)  # pads attend to themselves
        allowed[:, :, :offset] = True
        select, rows, source = [], [], []
        for b, p in enumerate(members):
            prefix = prefixes[p]
            n = len(prefix)
            rest = n - offset
            ids[b, :rest] = torch.tensor(prefix[offset:], dtype=torch.long)
            positions[b, :rest] = torch.arange(offset, n)
            allowed[b, :rest, offset : offset + rest] = torch.ones((rest, rest), dtype=torch.bool).tril()
            at = rest
            for r in rows_of[p]:
                k = len(suffixes[r])
                span = slice(at, at + k)
                ids[b, span] = torch.tensor(suffixes[r], dtype=torch.long)
                positions[b, span] = torch.arange(n, n + k)
                allowed[b, span, offset : offset + rest] = True
                allowed[b, span, offset + at : offset + at + k] = torch.ones((k, k), dtype=torch.bool).tril()
                select.append(b * length + at + k - 1)
                for j, token in enumerate(branches):  # each branch sees the prompt and itself
                    slot = at + k + j
                    ids[b, slot], positions[b, slot] = token, n + k
                    allowed[b, slot, offset : offset + rest] = True
                    allowed[b, slot, offset + at : offset + at + k] = True
                    select.append(b * length + slot)
                rows.append(r)
                # this row's cache slots: prefix left-padded to pwidth, suffix (and branches) to swidth
                slots = [0] * (pwidth - n) + list(range(n))
                slots += [0] * (swidth - k - nb) + list(range(offset + at, offset + at + k + nb))
                source.append([b * span_all + s for s in slots])
                at += k + nb
        part = cache_factory()
        for layer, (keys, values) in enumerate(head_cache):  # the shared start, with room for the bucket
            size = (len(members), -1, -1, -1)
            part.layers[layer] = kvcache.GrowingLayer(keys.expand(size), values.expand(size), room=length)
        additive = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        scores = forward(
            ids.to(device),
            additive[:, None].to(device),
            positions.to(device),
            part,
            torch.tensor(select, device=device),
        )
        index, targets = torch.tensor(source, device=device), torch.tensor(rows, device=device)
        for layer, states in enumerate(part.layers):  # written into the rows' cache, the bucket's freed
            for kind, tensor in enumerate((states.keys, states.values)):
                picked = _gather(tensor, index)
                if len(merged) <= layer * 2 + kind:
                    merged.append(picked.new_empty((len(owner), *picked.shape[1:])))
                # index_copy_: block copies, several times faster than indexed assignment on a CPU
                merged[layer * 2 + kind].index_copy_(0, targets, picked)
        if all_scores is None:
            all_scores = scores.new_empty((len(owner), 1 + nb, scores.shape[-1]))
        all_scores[targets] = scores.reshape(len(rows), 1 + nb, -1)
        del part
    cache = cache_factory()
    for layer in range(len(merged) // 2):  # the rows' cache grows in place as they decode
        cache.layers[layer] = kvcache.GrowingLayer(merged[2 * layer], merged[2 * layer + 1])
        merged[2 * layer] = merged[2 * layer + 1] = None
    mask = torch.zeros((len(owner), width), dtype=torch.long)
    for r, prefix in enumerate(owner):
        mask[r, pwidth - len(prefixes[prefix]) : pwidth] = 1
        mask[r, width - len(suffixes[r]) - nb :] = 1
    next_pos = torch.tensor([len(prefixes[p]) + len(s) for p, s in zip(owner, suffixes, strict=True)])
    return cache, mask.to(device), next_pos.to(device), all_scores


def shared_start(prompts: list[list[int]]) -> list[int]:
    """The tokens all ``prompts`` start with."""
    end = 0
    while all(len(p) > end for p in prompts) and len({p[end] for p in prompts}) == 1:
        end += 1
    return prompts[0][:end]


def _gather(states: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``states`` [batch, heads, length, dim] gathered at flat (batch x length) slots ``index`` [rows, width]
    into [rows, heads, width, dim]."""
    batch, heads, length, dim = states.shape
    flat = states.transpose(1, 2).reshape(batch * length, heads, dim)
    return flat[index].transpose(1, 2).contiguous()
