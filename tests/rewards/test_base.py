import pytest

from rewards.base import Reward, as_text, batch_normalize, dialogue_groups, reward_name, reward_source


def test_as_text_handles_strings_and_chat_messages():
    assert as_text("hi there") == "hi there"
    assert as_text([{"role": "assistant", "content": "i love dogs"}]) == "i love dogs"
    convo = [{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "text", "text": "a"}]}]
    assert as_text(convo) == "a"
    assert as_text([{"role": "user", "content": "only user"}]) == "only user"
    with pytest.raises(TypeError):
        as_text(3)


def test_dialogue_groups_orders_by_turn_and_rejects_duplicates():
    assert dialogue_groups(3, None, None) == [[0], [1], [2]]
    assert dialogue_groups(4, ["a", "b", "a", "b"], [1, 0, 0, 1]) == [[2, 0], [1, 3]]
    with pytest.raises(ValueError, match="same turn"):
        dialogue_groups(2, ["a", "a"], [0, 0])


def test_batch_normalize_hand_computed():
    out = batch_normalize([1.0, None, 3.0])
    assert out[1] is None
    assert out[0] == pytest.approx(-1.0) and out[2] == pytest.approx(1.0)  # mean 2, population std 1
    assert batch_normalize([5.0]) == [0.0]


def test_reward_names():
    class Mine(Reward):
        name = "mine"

    def my_fn(prompts, completions, **kw):
        return []

    assert reward_name(Mine()) == "mine" and reward_name(my_fn) == "my_fn"
    assert reward_source(my_fn).endswith(":test_reward_names.<locals>.my_fn")
