import math

import pytest
import torch

from rewards import PersonaReward, discounted_future


class TableReceiver:
    """Receiver stand-in: the score of an utterance is looked up in a table (persona ignored)."""

    def __init__(self, table):
        self.table = table

    def score(self, utterances, personas):
        assert len(utterances) == len(personas)
        return type("S", (), {"scores": torch.tensor([self.table[u] for u in utterances])})()


A, B = ["i have two dogs."], ["i am a nurse."]


def test_discounted_future_hand_computed():
    # p = 1..6, γ = 0.5: r_6 = 6; r_5 = 5 + 3 = 8; r_4 = 4 + 4 = 8; r_3 = 3 + 4 = 7; r_2 = 2 + 3.5; r_1 = 1 + 2.75
    assert discounted_future([1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5], 0.5) == pytest.approx([3.75, 5.5, 7, 8, 8, 6])
    # a missing turn is discounted over: r_0 = 1 + 0.5² · 3
    assert discounted_future([1, 3], [0, 2], 0.5) == pytest.approx([1.75, 3])


def test_mutual_persona_three_exchanges_in_shuffled_batch():
    """Two 6-utterance dialogues (3 A+B exchanges), interleaved and out of order in the batch."""
    p = {f"d1u{t}": float(t + 1) for t in range(6)} | {f"d2u{t}": 10.0 * (t % 2) for t in range(6)}
    rows = [(d, t) for t in (5, 2, 0, 3, 1, 4) for d in ("d1", "d2")]
    kwargs = dict(dialogue_id=[d for d, _ in rows], turn=[t for _, t in rows],
                  persona=[A if t % 2 == 0 else B for _, t in rows])
    completions = [f"{d}u{t}" for d, t in rows]
    reward = PersonaReward(TableReceiver(p), mutual=True, gamma=0.5)
    assert reward.needs_dialogue
    got = dict(zip(completions, reward(["p"] * len(rows), completions, **kwargs)))
    assert [got[f"d1u{t}"] for t in range(6)] == pytest.approx([3.75, 5.5, 7.0, 8.0, 8.0, 6.0])
    # dialogue 2, p = 0, 10, 0, 10, 0, 10: r_5 = 10, r_4 = 5, r_3 = 12.5, r_2 = 6.25, r_1 = 13.125, r_0 = 6.5625
    assert [got[f"d2u{t}"] for t in range(6)] == pytest.approx([6.5625, 13.125, 6.25, 12.5, 5.0, 10.0])


def test_plain_persona_and_batch_normalisation():
    table = {"x": 1.0, "y": 3.0}
    plain = PersonaReward(TableReceiver(table))
    assert not plain.needs_dialogue
    assert plain(["p", "p"], ["x", "y"], persona=[A, B], dialogue_id=["d", "d"], turn=[0, 1]) == [1.0, 3.0]
    norm = PersonaReward(TableReceiver(table), normalize=True)
    assert norm(["p", "p"], ["x", "y"], persona=[A, B]) == pytest.approx([-1.0, 1.0])
    with pytest.raises(ValueError, match="kwarg 'persona'"):
        plain(["p"], ["x"])
    with pytest.raises(ValueError, match="gamma"):
        PersonaReward(TableReceiver(table), gamma=1.5)


@pytest.mark.slow
def test_real_receiver_prefers_an_utterance_stating_its_own_persona(real_receiver):
    persona = ["i have two dogs and a cat.", "i work as a nurse at night.", "my favorite food is pizza."]
    completions = ["I'm a nurse, so I mostly work night shifts.",
                   "The stock market closed lower on Tuesday.",
                   [{"role": "assistant", "content": "My two dogs keep me busy!"}]]
    reward = PersonaReward(real_receiver)
    own, unrelated, chat = reward(["p"] * 3, completions, persona=[persona] * 3)
    assert own > unrelated + 1.0 and chat > unrelated + 1.0


class PairReceiver:
    """Receiver stand-in: score = number of words the utterance shares with the persona's first sentence."""

    def score(self, utterances, personas):
        assert len(utterances) == len(personas)
        s = [float(len(set(u.split()) & set(p[0].rstrip(".").split()))) for u, p in zip(utterances, personas)]
        return type("S", (), {"scores": torch.tensor(s)})()


def test_contrastive_persona_is_a_log_softmax_over_the_batch_personas():
    own_a, own_b = ["i have dogs."], ["i am a nurse."]
    shared = ["i have dogs.", "i am tall."]  # shares a sentence with own_a: never a rival of A
    reward = PersonaReward(PairReceiver(), contrastive=True)
    out = reward(["p"] * 3, ["i have dogs", "i am a nurse", "hello"], persona=[own_a, own_b, shared],
                 partner_persona=[own_b, own_a, own_b])
    # A: own 3 ("i have dogs"), rival own_b 1 ("i"); shared is not a rival -> 3 - log(e^3 + e^1)
    assert out[0] == pytest.approx(3 - math.log(math.exp(3) + math.exp(1)))
    # B: own 4, rivals own_a 1 and shared 1 ("i" each) -> 4 - log(e^4 + 2e)
    assert out[1] == pytest.approx(4 - math.log(math.exp(4) + 2 * math.e))
    # "hello" shares nothing with anyone; its rivals are only own_b (own_a shares "i have dogs.") -> -log 2
    assert out[2] == pytest.approx(-math.log(2))
    assert all(v <= 0 for v in out)
    # a speaker alone in the batch has no rival: log softmax over one candidate is 0
    assert reward(["p"], ["i have dogs"], persona=[own_a]) == [0.0]


def test_contrastive_rivals_compare_sentences_after_normalisation():
    """Personas written in another case, spacing or punctuation are one persona, counted once as a rival, and
    never a rival of the persona they restate."""
    own_a, own_b = ["i have dogs."], ["i am a nurse."]
    reward = PersonaReward(PairReceiver(), contrastive=True)
    variants = [["I am a NURSE"], ["i  am a nurse!"]]  # own_b twice more, written differently
    out = reward(["p"] * 3, ["i have dogs", "i am a nurse", "i am a nurse"], persona=[own_a, own_b, variants[0]],
                 partner_persona=[variants[1], ["I have dogs"], own_a])
    # A: own 3, one rival: own_b and its two spellings are one persona, "I have dogs" is own_a -> 3 - log(e³ + e)
    assert out[0] == pytest.approx(3 - math.log(math.exp(3) + math.exp(1)))
    # B: own 4 ("i am a nurse"), rival own_a only (1: "i") -> 4 - log(e⁴ + e)
    assert out[1] == pytest.approx(4 - math.log(math.exp(4) + math.e))
