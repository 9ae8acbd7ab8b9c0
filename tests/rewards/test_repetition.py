import pytest
import torch

from rewards import RepetitionReward


class AxisReceiver:
    """Embeds each text as a fixed unit vector from a table."""

    def __init__(self, table):
        self.table = table

    def embed(self, texts):
        return torch.nn.functional.normalize(torch.tensor([self.table[t] for t in texts], dtype=torch.float), dim=-1)


TABLE = {"a": [1, 0, 0], "b": [0, 1, 0], "a2": [1, 1, 0], "c": [0, 0, 1]}


def test_max_cosine_to_history_hand_computed():
    reward = RepetitionReward(AxisReceiver(TABLE))
    out = reward(["p"] * 3, ["a2", "c", "a"], history=[["a", "b"], ["a", "b"], []])
    assert out == pytest.approx([2 ** -0.5, 0.0, 0.0])  # cos(a2, a) = 1/√2; orthogonal; no history → 0


def test_batch_dialogue_fallback_and_same_speaker_only():
    reward = RepetitionReward(AxisReceiver(TABLE))
    out = reward(["p"] * 3, ["a", "a", "b"], dialogue_id=["d"] * 3, turn=[2, 0, 1])
    assert out == pytest.approx([1.0, 0.0, 0.0])  # turn 2 repeats turn 0 exactly
    own = RepetitionReward(AxisReceiver(TABLE), same_speaker_only=True)
    # history a, b, c: the speaker's own earlier turn is b (two back); a's and c's belong to the partner
    assert own(["p"], ["b"], history=[["a", "b", "c"]]) == pytest.approx([1.0])
    assert own(["p"], ["a"], history=[["a", "b", "c"]]) == pytest.approx([0.0])


@pytest.mark.slow
def test_real_receiver_penalises_a_repeat_more(real_receiver):
    history = ["hi! i have two dogs and i love hiking.", "nice, i am a nurse and i work nights."]
    reward = RepetitionReward(real_receiver)
    repeat, fresh, first = reward(["p"] * 3,
                                  ["Hi! I have two dogs and I love hiking.", "What kind of music do you listen to?", "x"],
                                  history=[history, history, []])
    assert repeat > 0.95 and repeat > fresh + 0.3 and first == 0.0
