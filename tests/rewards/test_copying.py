import pytest

from rewards import build_composite, build_reward, copy_penalty, echo_penalty, self_repeat_penalty
from rewards.copying import ramp

PERSONA = ["I have a dog named Max.", "I work as a nurse at the hospital.", "I am a girl."]


def test_ramp_hand_computed():
    assert ramp(0.5, 0.5) == 0.0 and ramp(0.75, 0.5) == pytest.approx(0.5) and ramp(1.0, 0.5) == 1.0
    assert ramp(0.2, 0.0) == pytest.approx(0.2)


def test_copy_penalty_grades_persona_copying():
    out = copy_penalty(["p"] * 4, ["i have a dog named max", "my dog max is great", "I am a girl", "hello"],
                       persona=[PERSONA] * 4)
    # full copy of {dog, named, max} -> 1; 2 of 3 words -> ramp(2/3) = (2/3 - 1/2) / (1/2) = 1/3;
    # "I am a girl" has one content word: ignored; nothing shared -> 0
    assert out == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
    with pytest.raises(ValueError, match="persona"):
        copy_penalty(["p"], ["x"])


def test_copy_penalty_step_charges_only_what_the_eval_counts_as_a_copy():
    texts = ["i have a dog named max", "my dog max is great", "my dog is great", "hello"]
    out = copy_penalty(["p"] * 4, texts, persona=[PERSONA] * 4, start=0.6, shape="step")
    # recall 1 and 2/3 are at or above 0.6 -> 1; 1/3 and 0 -> 0 (a ramp from 0.6 would give 1, 1/6, 0, 0)
    assert out == [1.0, 1.0, 0.0, 0.0]
    assert copy_penalty(["p"], [texts[1]], persona=[PERSONA], start=0.7, shape="step") == [0.0]
    with pytest.raises(ValueError, match="shape"):
        copy_penalty(["p"], ["x"], persona=[PERSONA], shape="cliff")


def test_echo_penalty_grades_repeating_the_partner():
    history = [["hello"], ["hi", "i love hiking with my dogs"], []]
    out = echo_penalty(["p"] * 3, ["hello", "i love hiking with my dogs", "hello"], history=history)
    assert out == [1.0, 1.0, 0.0]
    # "i love hiking" vs "i love hiking with my dogs": p = 1, r = 1/2 -> F1 = 2/3 -> ramp = 1/3
    assert echo_penalty(["p"], ["i love hiking"], history=[history[1]]) == pytest.approx([1 / 3])
    assert echo_penalty(["p"], ["where do you hike?"], history=[history[1]]) == [0.0]


def test_copy_and_echo_are_registered_penalties():
    for name in ("copy", "echo", "self_repeat"):
        _, weight = build_reward(name)
        assert weight == -1.0
    composite = build_composite([{"name": "copy", "args": {"start": 0.0}}, "echo"])
    total = composite(["p"], ["i have a dog named max"], persona=[PERSONA], history=[["i have a dog named max"]])
    assert total == [pytest.approx(-2.0)]
    assert composite.last_components == {"copy": [1.0], "echo": [1.0]}


def test_self_repeat_penalty_looks_at_the_speakers_own_earlier_turns():
    # history: A0, B0, A1, B1 -> the speaker now (A) said A0 and A1; B's lines do not count
    history = ["i love hiking with my dogs", "cool, i like cats", "my dogs are huskies", "i have two cats too"]
    out = self_repeat_penalty(["p"] * 3, ["i love hiking with my dogs", "i have two cats too", "where do you live?"],
                              history=[history] * 3)
    assert out == [1.0, 0.0, 0.0]
    assert self_repeat_penalty(["p"], ["anything"], history=[["hi"]]) == [0.0]  # no own turn yet
    _, weight = build_reward("self_repeat")
    assert weight == -1.0


def test_echo_and_self_repeat_take_the_step_shape_too():
    # "what do you like to do" vs "what do you like to do for fun": precision 1, recall 6/8 -> F1 = 6/7
    history = ["what do you like to do for fun?", "i hike"]
    line = ["what do you like to do?"]
    assert self_repeat_penalty(["p"], line, history=[history]) == pytest.approx([(6 / 7 - 0.5) / 0.5])
    assert self_repeat_penalty(["p"], line, history=[history], start=0.8, shape="step") == [1.0]
    assert self_repeat_penalty(["p"], line, history=[history], start=0.9, shape="step") == [0.0]
    assert echo_penalty(["p"], line, history=[history[:1]], start=0.8, shape="step") == [1.0]
    for penalty in (echo_penalty, self_repeat_penalty):
        with pytest.raises(ValueError, match="shape"):
            penalty(["p"], line, history=[history], shape="cliff")
