import pytest

from data_prep.personas import normalize_sentence, persona_key, shares_sentence


@pytest.mark.parametrize("text, expected", [
    ("I love hiking.", "i love hiking"),
    ("  I   LOVE\thiking !", "i love hiking"),
    ("i love, hiking", "i love hiking"),
    ("I'm a nurse.", "im a nurse"),
    ("I\u2019m a nurse", "im a nurse"),  # a curly apostrophe is an apostrophe
    ("my dog_name is max", "my dog name is max"),
    ("...", ""),
])
def test_normalize_sentence(text, expected):
    assert normalize_sentence(text) == expected


def test_persona_key_ignores_order_case_punctuation_and_spacing():
    a = ["I love hiking.", "I have a dog."]
    assert persona_key(a) == frozenset({"i love hiking", "i have a dog"})
    assert persona_key(["i have a DOG", "  i love   hiking !"]) == persona_key(a)
    assert persona_key(["I love hiking."]) != persona_key(a)  # a subset is another persona
    assert persona_key(["I love hiking.", "", "!"]) == frozenset({"i love hiking"})  # empty sentences do not count


def test_shares_sentence():
    a = ["I love hiking.", "I have a dog."]
    assert shares_sentence(a, ["i have a dog", "I am a pilot."])  # one sentence in common, written differently
    assert shares_sentence(a, a)
    assert not shares_sentence(a, ["I love hiking in winter.", "I have two dogs."])  # similar is not the same
    assert not shares_sentence(a, [])
    assert not shares_sentence(["."], ["!"])  # sentences empty after normalisation are not shared
