import torch
from transformers import DynamicCache

from models.generation.kv_reuse import RowCache, common_prefix, prefixed_batch, reusable, split_rows


def _row(ids, heads=2, dim=3, layers=2, offset=0.0):
    n = len(ids)
    keys = [torch.arange(heads * n * dim, dtype=torch.float).view(heads, n, dim) + offset + 100 * li for li in range(layers)]
    return RowCache(list(ids), keys, [k + 0.5 for k in keys])


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0 and common_prefix([7, 8], [7, 8]) == 2


def test_prefixed_batch_layout_hand_checked():
    a = _row([1, 2, 3, 4])
    b = _row([5, 6], offset=1000.0)
    prompts = [[1, 2, 3, 9, 9], [5, 6, 7], [8]]  # row a reuses 3, row b 2, row c has no cache
    ids, mask, cache = prefixed_batch(prompts, [a, b, None], pad_id=0)
    # P = 3 cached columns, S = max(2, 1, 1) = 2 suffix columns
    assert ids.tolist() == [[1, 2, 3, 9, 9], [0, 5, 6, 0, 7], [0, 0, 0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 0, 1], [0, 0, 0, 0, 1]]
    k0 = cache.layers[0].keys  # (B, H, P, D)
    assert k0.shape == (3, 2, 3, 3)
    assert torch.equal(k0[0], a.keys[0][:, :3]) and torch.equal(k0[1, :, 1:], b.keys[0][:, :2])
    assert torch.equal(k0[1, :, 0], torch.zeros(2, 3)) and torch.equal(k0[2], torch.zeros(2, 3, 3))
    assert torch.equal(cache.layers[1].values[0], a.values[1][:, :3])


def test_prefixed_batch_keeps_one_token_to_predict_from_and_handles_no_cache():
    a = _row([1, 2, 3])
    ids, mask, cache = prefixed_batch([[1, 2, 3]], [a], pad_id=0)  # the whole prompt is cached: reuse 2 of 3
    assert ids.tolist() == [[1, 2, 3]] and cache.layers[0].keys.shape[2] == 2
    ids, mask, cache = prefixed_batch([[4, 5], [6]], [None, None], pad_id=0)
    assert cache is None and ids.tolist() == [[4, 5], [0, 6]] and mask.tolist() == [[1, 1], [0, 1]]


def test_split_rows_picks_real_columns_and_covered_generated_tokens():
    B, H, D = 2, 1, 2
    input_ids = torch.tensor([[0, 7, 8], [5, 6, 9]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    generated = [[11, 12], [13, 14, 15]]  # row 0 stopped early; the longest row generated 3 tokens
    T = 3 + 3 - 1  # the last sampled token has no cache entry
    keys = torch.arange(B * H * T * D, dtype=torch.float).view(B, H, T, D)
    cache = DynamicCache(ddp_cache_data=[(keys, keys + 1)])
    rows = split_rows(cache, input_ids, mask, generated, num_new=3)
    assert rows[0].ids == [7, 8, 11, 12] and torch.equal(rows[0].keys[0], keys[0][:, [1, 2, 3, 4]])
    assert rows[1].ids == [5, 6, 9, 13, 14] and torch.equal(rows[1].values[0], keys[1][:, [0, 1, 2, 3, 4]] + 1)
    assert split_rows(None, input_ids, mask, generated, 3) == [None, None]
    assert reusable(cache) and not reusable(DynamicCache())
