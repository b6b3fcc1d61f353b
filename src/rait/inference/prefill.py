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
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

CALL_TOKENS = 16  # a forward's fixed cost (weights read, per-layer overhead) in tokens of compute


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
):
    """Run the prompts ``prefixes[owner[r]] + suffixes[r]`` (every suffix non-empty). Returns the cache of
    one row per ``r`` (``cache_factory()`` makes an empty one), its valid slots, each row's next position
    id and the scores after each prompt's last token.

    ``forward(ids, mask, positions, cache, select)`` runs the model and returns the scores at the flat
    positions ``select``; ``mask`` is 4-D, added to the attention scores (``dtype``: the model's)."""
    rows_of: dict[int, list[int]] = {}
    for row, prefix in enumerate(owner):
        rows_of.setdefault(prefix, []).append(row)
    passages = list(rows_of)
    total = {p: len(prefixes[p]) + sum(len(suffixes[r]) for r in rows_of[p]) for p in passages}
    passages.sort(key=total.get)
    pwidth = max(len(prefixes[p]) for p in passages)
    swidth = max(len(s) for s in suffixes)
    width = pwidth + swidth
    gathered: list[tuple[list[int], list, torch.Tensor]] = []  # (rows, per layer (keys, values), scores)
    for start, end in buckets([total[p] for p in passages]):
        members = passages[start:end]
        length = total[members[-1]]
        ids = torch.full((len(members), length), pad_id, dtype=torch.long)
        positions = torch.zeros((len(members), length), dtype=torch.long)
        allowed = torch.eye(length, dtype=torch.bool).repeat(len(members), 1, 1)  # pads attend to themselves
        select, rows, source = [], [], []
        for b, p in enumerate(members):
            prefix = prefixes[p]
            n = len(prefix)
            ids[b, :n] = torch.tensor(prefix, dtype=torch.long)
            positions[b, :n] = torch.arange(n)
            allowed[b, :n, :n] = torch.ones((n, n), dtype=torch.bool).tril()
            offset = n
            for r in rows_of[p]:
                k = len(suffixes[r])
                span = slice(offset, offset + k)
                ids[b, span] = torch.tensor(suffixes[r], dtype=torch.long)
                positions[b, span] = torch.arange(n, n + k)
                allowed[b, span, :n] = True
                allowed[b, span, span] = torch.ones((k, k), dtype=torch.bool).tril()
                select.append(b * length + offset + k - 1)
                rows.append(r)
                # this row's cache slots: prefix left-padded to pwidth, suffix left-padded to swidth
                slots = (
                    [0] * (pwidth - n) + list(range(n)) + [0] * (swidth - k) + list(range(offset, offset + k))
                )
                source.append([b * length + s for s in slots])
                offset += k
        part = cache_factory()
        additive = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        scores = forward(
            ids.to(device),
            additive[:, None].to(device),
            positions.to(device),
            part,
            torch.tensor(select, device=device),
        )
        index = torch.tensor(source, device=device)
        layers = [(_gather(layer.keys, index), _gather(layer.values, index)) for layer in part.layers]
        gathered.append((rows, layers, scores))
    order = [r for rows, _, _ in gathered for r in rows]
    place = torch.empty(len(order), dtype=torch.long)
    place[torch.tensor(order)] = torch.arange(len(order))
    place = place.to(device)
    cache = cache_factory()
    for layer in range(len(gathered[0][1])):
        keys = torch.cat([layers[layer][0] for _, layers, _ in gathered])[place]
        values = torch.cat([layers[layer][1] for _, layers, _ in gathered])[place]
        cache.update(keys, values, layer)
    mask = torch.zeros((len(owner), width), dtype=torch.long)
    for r, prefix in enumerate(owner):
        mask[r, pwidth - len(prefixes[prefix]) : pwidth] = 1
        mask[r, width - len(suffixes[r]) :] = 1
    next_pos = torch.tensor([len(prefixes[p]) + len(s) for p, s in zip(owner, suffixes, strict=True)])
    scores = torch.cat([s for _, _, s in gathered])[place]
    return cache, mask.to(device), next_pos.to(device), scores


def _gather(states: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``states`` [batch, heads, length, dim] gathered at flat (batch x length) slots ``index`` [rows, width]
    into [rows, heads, width, dim]."""
    batch, heads, length, dim = states.shape
    flat = states.transpose(1, 2).reshape(batch * length, heads, dim)
    return flat[index].transpose(1, 2).contiguous()
