import pytest
import torch

from rewards import ScorerPool, build_composite
from tests.rewards.reward_stubs import CharFormatter, LoggedTransmitter


class FakeAccelerator:
    device = torch.device("meta")


def test_pool_shares_one_transmitter_and_one_receiver():
    transmitter, receiver = LoggedTransmitter({}), object()
    pool = ScorerPool(transmitter=transmitter, receiver_model=receiver, formatter=CharFormatter())
    transmitter.tokenizer = None
    assert pool.lm_scorer().model is transmitter.lm and pool.nup_scorer().transmitter is transmitter
    comp = build_composite(["fluency", "coherence", "persona", "repetition"], pool=pool)
    rewards = {c.name: c.reward for c in comp.terms}
    assert rewards["fluency"].scorer is pool.lm_scorer() and rewards["coherence"].scorer is pool.nup_scorer()
    assert rewards["persona"].receiver is receiver and rewards["repetition"].receiver is receiver


def count_loads(monkeypatch, cls) -> list:
    """Record every ``cls.from_pretrained`` call (the real loader still runs)."""
    calls, load = [], cls.from_pretrained

    def spy(*args, **kwargs):
        calls.append(args[0])
        return load(*args, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", spy)
    return calls


def test_setup_moves_only_models_the_pool_loaded(tiny_receiver_dir):
    transmitter = LoggedTransmitter({})
    pool = ScorerPool(transmitter=transmitter, receiver=str(tiny_receiver_dir))
    receiver = pool.receiver()
    pool.setup(FakeAccelerator())
    assert pool.device == FakeAccelerator.device and pool._owned == [receiver]
    assert {p.device.type for p in receiver.parameters()} == {"meta"}  # loaded by the pool: moved
    assert {p.device.type for p in transmitter.parameters()} == {"cpu"}  # handed in: left where it was


def test_persona_and_repetition_share_one_frozen_receiver_loaded_once(tiny_receiver_dir, monkeypatch):
    from models.networks.receiver import Receiver

    loads = count_loads(monkeypatch, Receiver)
    pool = ScorerPool(receiver=str(tiny_receiver_dir))
    comp = build_composite(["persona", "repetition"], pool=pool)
    assert loads == []  # nothing is loaded before the first call
    texts, personas = ["i walk my dog daily.", "i love hiking."], [["i like dogs.", "i am a nurse."], ["i hike."]]
    comp(["p", "p"], texts, persona=personas, history=[["hello."], []], speaker=["A", "B"])
    receiver = pool.receiver()
    assert loads == [str(tiny_receiver_dir)] and pool._owned == [receiver] and pool._transmitter is None
    assert not receiver.training and not any(p.requires_grad for p in receiver.parameters())
    rewards = {c.name: c.reward for c in comp.terms}
    assert rewards["persona"].receiver is receiver and rewards["repetition"].receiver is receiver
    direct = Receiver.from_pretrained(str(tiny_receiver_dir)).eval()
    with torch.no_grad():
        expected = direct.score(texts, personas).scores.tolist()
    assert comp.last_components["persona"] == pytest.approx(expected, abs=1e-5)


def test_pool_loads_one_frozen_transmitter_for_fluency_and_coherence(tiny_model_dir, monkeypatch):
    from models.networks.transmitter import Transmitter

    loads = count_loads(monkeypatch, Transmitter)
    pool = ScorerPool(policy=str(tiny_model_dir))
    comp = build_composite([{"name": "fluency", "args": {"condition_on_context": True}}, "coherence"], pool=pool)
    assert loads == []  # nothing is loaded before the first call
    kwargs = dict(persona=[["i like dogs."]] * 2, history=[["hi!"], []])
    totals = comp(["p", "p"], ["i walk my dog daily.", "hello there."], **kwargs)
    transmitter = pool.transmitter()
    assert loads == [str(tiny_model_dir)] and pool._owned == [transmitter] and pool._receiver is None
    assert not transmitter.training and not any(p.requires_grad for p in transmitter.parameters())
    rewards = {c.name: c.reward for c in comp.terms}
    assert rewards["fluency"].scorer is pool.lm_scorer() and rewards["coherence"].scorer is pool.nup_scorer()
    assert pool.lm_scorer().model is transmitter.lm and pool.nup_scorer().transmitter is transmitter
    fmt = pool.formatter()
    ids = fmt.encode_context(["i like dogs."], ["hi!"]) + fmt.encode_response("i walk my dog daily.")
    n_resp = len(fmt.encode_response("i walk my dog daily."))
    with torch.no_grad():
        logps = transmitter.lm(input_ids=torch.tensor([ids])).logits[0, :-1].log_softmax(-1)  # (L-1, V)
    manual = logps[torch.arange(len(ids) - 1), torch.tensor(ids[1:])][-n_resp:].mean().item()
    assert comp.last_components["fluency"][0] == pytest.approx(manual, abs=1e-4)
    contexts = [fmt.encode_context(p, h) for p, h in zip(kwargs["persona"], kwargs["history"])]
    responses = [fmt.encode_response(t) for t in ["i walk my dog daily.", "hello there."]]
    nup = torch.sigmoid(transmitter.score_nup(contexts, responses)) - 0.5  # the same frozen model scores coherence
    assert comp.last_components["coherence"] == pytest.approx(nup.tolist(), abs=1e-6)
    assert totals[0] == pytest.approx(0.5 * manual + 0.1 * comp.last_components["coherence"][0], abs=1e-5)
