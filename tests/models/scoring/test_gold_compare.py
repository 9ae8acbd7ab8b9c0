"""The paired comparison of two gold evaluations: values as on the data, intervals from resampling dialogues."""

import math

import pytest
import torch

from models.scoring.gold_compare import compare_gold, dialogue_tallies, gold_comparison_table
from models.scoring.metrics import bootstrap_indices

IDS = ["d0", "d0", "d1", "d2", "d2", "d2"]


def record(f1, hits, nll, tokens):
    return {"dialogue_id": list(IDS), "f1": f1, "hits1_nup": hits, "hits1_lm": hits, "nll": nll, "tokens": tokens}


A = record([0.2, 0.4, 0.0, 0.5, 0.1, 0.3], [1, 0, 1, 1, 0, 0], [10.0, 8.0, 3.0, 6.0, 9.0, 4.0], [4, 3, 2, 3, 5, 2])
B = record([0.1, 0.3, 0.2, 0.2, 0.1, 0.0], [0, 0, 1, 0, 0, 0], [12.0, 9.0, 2.0, 8.0, 9.0, 6.0], [4, 3, 2, 3, 5, 2])


def test_values_are_the_per_turn_statistics_and_intervals_resample_whole_dialogues():
    c = compare_gold(A, B, num_samples=500, seed=3)
    assert c["f1"]["a"] == pytest.approx(sum(A["f1"]) / 6) and c["hits1_nup"]["b"] == pytest.approx(1 / 6)
    assert c["ppl"]["a"] == pytest.approx(math.exp(sum(A["nll"]) / sum(A["tokens"])))
    assert c["ppl"]["rel"] == pytest.approx(c["ppl"]["a"] / c["ppl"]["b"] - 1)
    # the interval of the F1 difference, recomputed from the same dialogue resamples
    units, tallies = dialogue_tallies(A)
    assert units == ["d0", "d1", "d2"] and tallies["f1"][1].tolist() == [2, 1, 3]
    idx = bootstrap_indices(3, 500, 3)
    per_dialogue = {d: [i for i, x in enumerate(IDS) if x == d] for d in units}
    diffs = []
    for row in idx.tolist():
        turns = [i for u in row for i in per_dialogue[units[u]]]
        diffs.append(sum(A["f1"][i] - B["f1"][i] for i in turns) / len(turns))
    diffs = torch.tensor(diffs).sort().values
    assert c["f1"]["low"] == pytest.approx(diffs[int(0.025 * 499)].item())
    assert c["f1"]["high"] == pytest.approx(diffs[int(round(0.975 * 499))].item())


def test_a_model_against_itself_differs_by_nothing_and_other_turns_are_refused():
    same = compare_gold(A, A, num_samples=100)
    assert all(c["diff"] == 0 and c["low"] == 0 and c["high"] == 0 for c in same.values())
    assert "perplexity of the gold response" in gold_comparison_table("rl", "sft", same)
    with pytest.raises(ValueError, match="same examples"):
        compare_gold(A, {**B, "dialogue_id": ["d0", "d1", "d1", "d2", "d2", "d2"]})
    ppl_only = {k: A[k] for k in ("dialogue_id", "nll", "tokens")}
    assert set(compare_gold(ppl_only, B)) == {"ppl"}  # only what both measured
