import math

import pytest
import torch

from models.scoring.metrics import (
    example_ranks,
    hits_at_1,
    normalize_answer,
    paired_bootstrap,
    perplexity,
    ranking_metrics,
    unigram_f1,
)


@pytest.mark.parametrize("text, expected", [
    ("The Cat, sat on a MAT!", "cat sat on mat"),
    ("an apple... and   the   pear", "apple and pear"),
    ("I'm there", "i m there"),
    ("theatre and anthem", "theatre and anthem"),  # articles only as whole words
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_f1_hand_computed():
    # guess: "i love my dog" (4), gold: "my dog loves me" -> "my dog loves me" (4); common {my, dog} = 2
    assert unigram_f1("I love my dog!", "My dog loves me.") == pytest.approx(0.5)
    # articles and punctuation do not count: guess "cat" vs gold "cat is here" -> p=1, r=1/3 -> f1 = 0.5
    assert unigram_f1("The cat.", "a cat is here") == pytest.approx(0.5)
    # repeated tokens are clipped by the multiset intersection: guess "yes yes yes" vs "yes no": common 1,
    # p = 1/3, r = 1/2 -> f1 = 0.4
    assert unigram_f1("yes yes yes", "yes, no") == pytest.approx(0.4)
    assert unigram_f1("Hello there!", "hello THERE") == 1.0
    assert unigram_f1("", "anything") == 0.0 and unigram_f1("the a an", "the") == 0.0


def test_hits_at_1():
    assert hits_at_1([3.0, 1.0, 2.0]) == 1.0
    assert hits_at_1([1.0, 3.0, 2.0]) == 0.0
    assert hits_at_1([0.0, 5.0], gold_index=1) == 1.0
    assert hits_at_1([4.0]) == 1.0  # a single candidate is always first


def test_hits_at_1_counts_a_t_way_tie_as_one_in_t_plus_1():
    assert hits_at_1([2.0, 2.0]) == pytest.approx(1 / 2)
    assert hits_at_1([2.0, 2.0, 2.0, 1.0]) == pytest.approx(1 / 3)  # two others tied with the gold, one below
    assert hits_at_1([1.0, 2.0, 1.0]) == 0.0  # tied, but another candidate is above: never first
    assert hits_at_1([0.0, 5.0, 0.0], gold_index=2) == 0.0
    assert hits_at_1([3.0, 1.0, 3.0], gold_index=2) == pytest.approx(1 / 2)


def test_example_ranks_with_ties_hand_computed():
    pos = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0])
    neg = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
    hits, rr = example_ranks(pos, neg)
    # rank 1; rank 2; tied for first: rank 1 or 2; three-way tie: rank 1, 2 or 3; one above, one tied: rank 2 or 3
    assert hits.tolist() == pytest.approx([1.0, 0.0, 1 / 2, 1 / 3, 0.0])
    assert rr.tolist() == pytest.approx([1.0, 1 / 2, (1 + 1 / 2) / 2, (1 + 1 / 2 + 1 / 3) / 3, (1 / 2 + 1 / 3) / 2])


def test_ranking_metrics_with_ties():
    pos = torch.tensor([1.0, 1.0, 1.0])
    neg = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    m = ranking_metrics(pos, neg)
    assert m["hits@1"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.75) / 3)
    assert m["num_candidates"] == 3 and m["num_examples"] == 3
    # a constant scorer is at chance, 1 / (1 + K), whatever K is
    flat = ranking_metrics(torch.zeros(4), torch.zeros(4, 9))
    assert flat["hits@1"] == pytest.approx(1 / 10)
    assert flat["mrr"] == pytest.approx(sum(1 / r for r in range(1, 11)) / 10)


def test_hits_at_1_agrees_with_example_ranks():
    scores = [2.0, 3.0, 2.0, 2.0, 0.5]
    for gold in range(len(scores)):
        others = torch.tensor([s for i, s in enumerate(scores) if i != gold])
        hits, _ = example_ranks(torch.tensor([scores[gold]]), others.unsqueeze(0))
        assert hits_at_1(scores, gold) == pytest.approx(float(hits[0]))


def test_perplexity():
    assert perplexity(2 * math.log(4.0), 2) == pytest.approx(4.0)
    assert math.isnan(perplexity(0.0, 0))


def test_paired_bootstrap():
    same = paired_bootstrap([1.0, 0.0, 1.0], [0.0, -1.0, 0.0])  # every difference is 1: no spread
    assert same == {"diff": 1.0, "low": 1.0, "high": 1.0}
    a = torch.tensor([1.0] * 30 + [0.0] * 70)
    b = torch.zeros(100)
    ci = paired_bootstrap(a, b, num_samples=4000, seed=1)
    assert ci["diff"] == pytest.approx(0.3)
    se = math.sqrt(0.3 * 0.7 / 100)  # normal approximation of the mean of 0/1 differences
    assert ci["low"] == pytest.approx(0.3 - 1.96 * se, abs=0.02) and ci["high"] == pytest.approx(0.3 + 1.96 * se, abs=0.02)
    with pytest.raises(ValueError):
        paired_bootstrap([], [])


def test_paired_ratio_bootstrap_covers_a_known_difference():
    """Synthetic units whose true rate differs by +0.2 between two models: the paired CI holds it and excludes 0."""
    from models.scoring.metrics import bootstrap_indices, paired_interval, ratio_of_sums

    gen = torch.Generator().manual_seed(1)
    n = 200
    difficulty = torch.rand(n, generator=gen) * 0.5  # shared per unit: what pairing cancels
    den = torch.randint(2, 6, (n,), generator=gen).double()
    num_b = torch.binomial(den, difficulty.double(), generator=gen)
    num_a = torch.binomial(den, (difficulty + 0.2).double(), generator=gen)
    idx = bootstrap_indices(n, 2000, seed=0)
    a, b = ratio_of_sums(num_a, den), ratio_of_sums(num_b, den)
    stats = paired_interval(a, b, ratio_of_sums(num_a, den, idx), ratio_of_sums(num_b, den, idx))
    assert stats["low"] < 0.2 < stats["high"]
    assert stats["low"] > 0
    assert stats["rel"] == pytest.approx(float(a / b) - 1)
    assert stats["rel_low"] < stats["rel"] < stats["rel_high"]
    # the same data against itself: a zero difference, and an interval around it
    same = paired_interval(a, a, ratio_of_sums(num_a, den, idx), ratio_of_sums(num_a, den, idx))
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0


def test_ratio_of_sums_hand_computed_and_empty_denominator():
    from models.scoring.metrics import ratio_of_sums

    num, den = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([2.0, 2.0, 0.0])
    assert float(ratio_of_sums(num, den)) == pytest.approx(3 / 4)
    idx = torch.tensor([[0, 0, 0], [2, 2, 2]])
    out = ratio_of_sums(num, den, idx)
    assert out[0].item() == pytest.approx(0.5) and math.isnan(out[1].item())
