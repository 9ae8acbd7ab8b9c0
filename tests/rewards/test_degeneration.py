import pytest

from rewards import build_reward, degeneration, repeated_ngram_fraction


def test_repeated_ngram_fraction_hand_computed():
    # 8 words -> 6 trigrams; "jazz-loving jazz-loving jazz-loving" repeats from the 4th trigram on
    text = "I'm a jazz-loving jazz-loving jazz-loving jazz-loving jazz-loving jazz-loving"
    # trigrams: (i'm a jl) (a jl jl) (jl jl jl) (jl jl jl) (jl jl jl) (jl jl jl) -> 3 repeats of 6
    assert repeated_ngram_fraction(text) == pytest.approx(3 / 6)
    assert repeated_ngram_fraction("I love hiking with my two dogs.") == 0.0
    assert repeated_ngram_fraction("no no") == pytest.approx(1 / 2)  # shorter than n: unigrams
    assert repeated_ngram_fraction("") == 0.0 and repeated_ngram_fraction("hi") == 0.0
    assert repeated_ngram_fraction("Yes, yes. YES!", n=1) == pytest.approx(2 / 3)  # case and punctuation ignored


def test_degeneration_is_a_registered_negative_reward_on_chat_completions():
    reward, weight = build_reward("degeneration")
    assert weight == -1.0
    completions = [[{"role": "assistant", "content": "a b c a b c a b c"}], "a fine and varied reply"]
    assert reward(["p", "p"], completions) == pytest.approx([4 / 7, 0.0])
    assert degeneration(["p"], ["a b a b a b"], n=2) == pytest.approx([3 / 5])
