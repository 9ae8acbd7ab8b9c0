import math

import pytest
import torch
from reward_stubs import CharFormatter, LoggedTransmitter

from models.scorers import NUPScorer
from rewards import CoherenceReward, ScorerPool


def test_coherence_is_nup_probability_minus_half():
    t = LoggedTransmitter({2: 0.0, 3: math.log(3.0), 4: -math.log(3.0)})
    reward = CoherenceReward(NUPScorer(t, batch_size=2), formatter=CharFormatter())
    got = reward(["p"] * 3, ["a", "ab", "abc"], persona=[["x"]] * 3, history=[["h"], [], ["h", "i"]])
    assert got == pytest.approx([0.0, 0.25, -0.25])  # σ(0) − ½, σ(ln 3) − ½ = ¾ − ½, σ(−ln 3) − ½
    assert len(t.seen) == 2  # batch_size 2: two calls
    assert t.seen[0][0][0] == [ord(c) for c in "x|h"] + [0] and t.seen[0][1][0] == [ord("a"), 1]
    # without persona/history kwargs the prompt text is the context
    reward(["hey"], ["a"])
    assert t.seen[-1][0] == [[ord(c) for c in "hey"]]


def test_real_transmitter_coherence(tiny_model_dir):
    transmitter_mod = pytest.importorskip("models.transmitter", reason="models/transmitter.py not written yet")
    prompt_mod = pytest.importorskip("models.prompt", reason="models/prompt.py not written yet")
    transmitter = transmitter_mod.Transmitter.from_pretrained(str(tiny_model_dir))
    formatter = prompt_mod.PromptFormatter(transmitter.tokenizer)
    pool = ScorerPool(transmitter=transmitter, formatter=formatter)
    reward = CoherenceReward(pool=pool)
    kwargs = dict(persona=[["i like dogs."]] * 2, history=[["hi, how are you?"], []])
    got = reward(["p", "p"], ["fine, thanks! i was walking my dog.", "hello!"], **kwargs)
    contexts = [formatter.encode_context(p, h) for p, h in zip(kwargs["persona"], kwargs["history"])]
    responses = [formatter.encode_response(t) for t in ["fine, thanks! i was walking my dog.", "hello!"]]
    with torch.no_grad():
        expected = torch.sigmoid(transmitter.score_nup(contexts, responses).float()) - 0.5
    assert got == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(-0.5 < g < 0.5 for g in got)
