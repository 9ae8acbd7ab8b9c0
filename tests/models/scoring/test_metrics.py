import math

import pytest
import torch

from models.scoring.metrics import hits_at_1, normalize_answer, paired_bootstrap, perplexity, unigram_f1


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
    assert hits_at_1([2.0, 2.0]) == 0.0  # a tie is not a hit
    assert hits_at_1([0.0, 5.0], gold_index=1) == 1.0


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
