import math

import pytest
import torch

from models.scoring.scorers import NUPScorer
from rewards import CoherenceReward, ScorerPool
from tests.rewards.reward_stubs import CharFormatter, LoggedTransmitter


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
    """The reward is σ − ½ of the NUP head's logit at the response's last token, computed here by hand."""
    from models.networks.transmitter import Transmitter
    from models.prompting.prompt import PromptFormatter

    transmitter = Transmitter.from_pretrained(str(tiny_model_dir))
    formatter = PromptFormatter(transmitter.tokenizer)
    reward = CoherenceReward(pool=ScorerPool(transmitter=transmitter, formatter=formatter))
    kwargs = dict(persona=[["i like dogs."]] * 2, history=[["hi, how are you?"], []])
    responses = ["fine, thanks! i was walking my dog.", "hello!"]
    got = reward(["p", "p"], responses, **kwargs)
    expected = []
    for persona, history, response in zip(kwargs["persona"], kwargs["history"], responses):
        ids = formatter.encode_context(persona, history) + formatter.encode_response(response)
        with torch.no_grad():
            hidden = transmitter.lm(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
            expected.append(torch.sigmoid(transmitter.nup_head(hidden[0, -1])).item() - 0.5)
    assert got == pytest.approx(expected, abs=1e-5)
    # the sign and size follow the head: a large bias pushes every reward to +½, a negative one to −½
    for bias, limit in ((10.0, 0.499), (-10.0, -0.499)):
        with torch.no_grad():
            transmitter.nup_head.bias.fill_(bias)
        shifted = reward(["p", "p"], responses, **kwargs)
        assert all(abs(s) > abs(limit) and (s > 0) == (bias > 0) for s in shifted), shifted
