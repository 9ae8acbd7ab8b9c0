"""Reusing a speaker's KV cache across turns of a dialogue.

A speaker's prompt at turn t+2 starts with what it saw and said at turn t: its persona, the history so far and its
own last response. ``RowCache`` keeps the key/value states a ``generate`` call computed for one row (prompt plus
generated tokens) with the token ids they belong to; the next call of the same speaker reuses the longest common
prefix of those ids and its new prompt, so only the new tokens (the partner's reply, the re-opened turn) are
encoded. The match is by token id, so a response re-tokenised differently, or a history cut from the left, simply
reuses less.

Batch layout of a call with reuse (B rows, each right-aligned within two regions)::

    | pad … cached prefix (L_i tokens) | pad … new suffix (S_i tokens) | generated →
    |<------------- P = max L_i ------>|<-------- S = max S_i -------->|

The padding between the regions is masked out; position ids come from the attention mask, so every real token
keeps the position it had when its cache entry was computed. Only plain full-attention caches (every layer a
``DynamicLayer``) are reused; anything else (sliding windows, recurrent state) falls back to a full prefill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


@dataclass
class RowCache:
    """One row's cache: ``ids`` (L,) and, per layer, ``keys``/``values`` (H, L, D) for exactly those tokens."""

    ids: list[int]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]


def reusable(cache) -> bool:
    """True for a cache whose every layer is a plain, full-attention ``DynamicLayer``."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefixed_batch(prompts: Sequence[Sequence[int]], caches: Sequence[RowCache | None], pad_id: int):
    """Input ids, attention mask (B, P + S) and a ``DynamicCache`` holding each row's reusable prefix (P columns).

    Row i reuses ``L_i = common_prefix(cache_i.ids, prompt_i)`` tokens, at most ``len(prompt_i) - 1`` (generation
    needs one uncached token to predict from). Returns ``(ids, mask, cache)``; ``cache`` is None when nothing is
    reusable (then ids/mask are the plain left-padded prompts).
    """
    reuse = [min(common_prefix(c.ids, p), len(p) - 1) if c is not None else 0 for p, c in zip(prompts, caches)]
    P = max(reuse, default=0)
    S = max(len(p) - n for p, n in zip(prompts, reuse))
    B = len(prompts)
    ids = torch.full((B, P + S), pad_id, dtype=torch.long)
    mask = torch.zeros((B, P + S), dtype=torch.long)
    for i, (p, n) in enumerate(zip(prompts, reuse)):
        ids[i, P - n : P] = torch.as_tensor(list(p[:n]), dtype=torch.long)
        mask[i, P - n : P] = 1
        suffix = list(p[n:])
        ids[i, P + S - len(suffix) :] = torch.as_tensor(suffix, dtype=torch.long)
        mask[i, P + S - len(suffix) :] = 1
    if P == 0:
        return ids, mask, None
    template = next(c for c, n in zip(caches, reuse) if n > 0)
    layers = []
    for li in range(len(template.keys)):
        k_ref, v_ref = template.keys[li], template.values[li]
        k = k_ref.new_zeros(B, k_ref.shape[0], P, k_ref.shape[2])  # (B, H, P, D)
        v = v_ref.new_zeros(B, v_ref.shape[0], P, v_ref.shape[2])
        for i, n in enumerate(reuse):
            if n:
                k[i, :, P - n :] = caches[i].keys[li][:, :n]
                v[i, :, P - n :] = caches[i].values[li][:, :n]
        layers.append((k, v))
    return ids, mask, DynamicCache(ddp_cache_data=layers)


def split_rows(cache, input_ids: torch.Tensor, mask: torch.Tensor, generated: Sequence[Sequence[int]],
               num_new: int) -> list[RowCache | None]:
    """Per-row ``RowCache`` after a ``generate`` call.

    Args:
        cache: the call's final cache (columns: the ``(B, T)`` input, then ``num_new - 1`` generated tokens: the last
            sampled token was never fed back, so it has no entry).
        input_ids, mask: the call's input (B, T) and attention mask; real tokens are where ``mask`` is 1.
        generated: per row, its generated ids up to and including its stop token.
        num_new: columns the call generated (the longest row's length).
    """
    if not reusable(cache):
        return [None] * len(generated)
    T = input_ids.shape[1]
    out = []
    for i, gen in enumerate(generated):
        n_gen = min(len(gen), num_new - 1)
        cols = torch.cat([mask[i].nonzero().squeeze(-1), torch.arange(T, T + n_gen)]).to(cache.layers[0].keys.device)
        ids = input_ids[i][mask[i].bool()].tolist() + list(gen[:n_gen])
        out.append(RowCache(ids, [layer.keys[i].index_select(1, cols) for layer in cache.layers],
                            [layer.values[i].index_select(1, cols) for layer in cache.layers]))
    return out
