import pytest

from models.scoring.text_metrics import (
    content_recall,
    copies_persona,
    covered_facts,
    distinct_n,
    is_near_copy,
    repeated_ngram_fraction,
    token_f1,
)

PERSONA = ["I have a dog named Max.", "I work as a nurse at the hospital.", "I am a girl."]


def test_a_copied_persona_sentence_counts_as_a_copy():
    # content words of "I have a dog named Max." = {dog, named, max}
    assert copies_persona("i have a dog named max", PERSONA)
    assert copies_persona("Yes! I have a dog, his name... named Max!", PERSONA)
    # "I work as a nurse at the hospital." -> {work, nurse, hospital}: 3 of 3 reproduced, in other words around them
    assert copies_persona("I work night shifts as a nurse in a big hospital", PERSONA)


def test_revealing_a_fact_without_copying_is_not_a_copy():
    assert content_recall("my dog max loves the park", PERSONA[0]) == pytest.approx(2 / 3)  # dog, max of 3
    assert not copies_persona("my dog max loves the park", PERSONA)  # 67% < 80%
    # a one-content-word sentence ("I am a girl." -> {girl}) is never a copy, whatever the utterance
    assert not copies_persona("I am a girl", PERSONA)
    assert copies_persona("I am a girl", ["I am a girl."], min_words=1)
    assert not copies_persona("hello there, how are you?", PERSONA)


def test_fact_coverage_counts_persona_sentences_half_revealed():
    said = ["I take Max to the park every day", "long shift at the hospital today"]
    # dog-sentence {dog, named, max}: max = 1/3 < 0.5; nurse-sentence {work, nurse, hospital}: 1/3; girl: 0
    assert covered_facts(said, PERSONA) == 0
    said = ["my dog max is a good boy", "I am a nurse at the hospital"]
    assert covered_facts(said, PERSONA) == 2
    assert covered_facts(said, PERSONA, threshold=1.0) == 0  # nobody said "named" or "work"


def test_an_echo_is_detected_and_a_reply_is_not():
    partner = "I love hiking in the mountains with my dogs."
    assert is_near_copy("i love hiking in the mountains with my dogs!", partner)
    assert is_near_copy("I love hiking in the mountains with my dog.", partner)  # 8 of 9 tokens: F1 ≈ 0.89
    assert not is_near_copy("That sounds fun! Where do you usually hike?", partner)
    assert not is_near_copy("", "")  # an empty turn is not an echo
    # F1 by hand: "i like cats" vs "i like dogs": 2 common of 3 and 3 -> p = r = 2/3
    assert token_f1("I like cats", "I like dogs") == pytest.approx(2 / 3)


def test_distinct_n_hand_computed():
    texts = ["i like cats", "i like dogs"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # i, like, cats, dogs of 6 unigrams
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (i like) twice, (like cats), (like dogs)
    assert distinct_n([""], 2) == 0.0


def test_repeated_ngram_fraction_lives_in_models_and_rewards_reuse_it():
    from rewards.degeneration import degeneration

    text = "a b c a b c"  # trigrams: abc bca cab abc -> 1 of 4 repeated
    assert repeated_ngram_fraction(text) == pytest.approx(1 / 4)
    assert degeneration([""], [text]) == [pytest.approx(1 / 4)]
