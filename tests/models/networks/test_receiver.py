import math

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from models.loading.embedded import embedded_receiver_path
from models.networks.receiver import Receiver, mean_pool, pad_personas, soft_persona_scores

LONG = "this sentence is much longer than the other one so that the short text gets a lot of padding " * 3


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(embedded_receiver_path())


def tiny_receiver(tokenizer, temperature=0.5, **kwargs) -> Receiver:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return Receiver(BertModel(cfg), tokenizer, temperature=temperature, **kwargs).eval()


@pytest.fixture()
def receiver(tokenizer):
    return tiny_receiver(tokenizer)


def test_mean_pool_ignores_masked_positions():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_padding_does_not_change_an_embedding(receiver):
    alone = receiver.embed(["i have a dog"])[0]
    batched = receiver.embed(["i have a dog", LONG])
    assert torch.allclose(alone, batched[0], atol=1e-5)
    assert torch.allclose(batched.norm(dim=-1), torch.ones(2), atol=1e-5)
    # The test can fail: pooling over every position (pads included) does change the short text's vector.
    enc = receiver.tokenize(["i have a dog", LONG])
    with torch.no_grad():
        hidden = receiver.encoder(**enc).last_hidden_state
    naive = torch.nn.functional.normalize(hidden[0].mean(0), dim=-1)
    assert not torch.allclose(naive, alone, atol=1e-3)


def test_embed_keeps_input_order_and_batches(receiver):
    texts = ["a b c d e f g", "hi", "i like hiking in the mountains", "ok"]
    together = receiver.embed(texts, batch_size=2)
    one_by_one = torch.cat([receiver.embed([t]) for t in texts])
    assert torch.allclose(together, one_by_one, atol=1e-5)


def test_soft_persona_scores_hand_computed():
    u = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # the last row is padding
    mask = torch.tensor([[True, True, False]])
    scores, sims, weights = soft_persona_scores(u, p, mask, temperature=1.0)
    e = math.e
    assert scores.item() == pytest.approx(e / (e + 1), abs=1e-6)  # softmax([1, 0]) · [1, 0]
    assert sims.tolist() == [[1.0, 0.0, 0.0]]
    assert weights[0, 2].item() == 0.0
    assert weights[0, :2].tolist() == pytest.approx([e / (e + 1), 1 / (e + 1)], abs=1e-6)


def test_score_rises_with_similarity_of_the_best_sentence():
    u = torch.tensor([[1.0, 0.0]])
    mask = torch.tensor([[True, True]])
    previous = -math.inf
    for angle in (1.5, 1.0, 0.5, 0.0):  # the first persona sentence moves towards u
        p = torch.tensor([[[math.cos(angle), math.sin(angle)], [0.0, 1.0]]])
        score = soft_persona_scores(u, p, mask, temperature=0.2)[0].item()
        assert score > previous
        previous = score


def test_temperature_interpolates_between_max_and_mean():
    u = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])  # cosines 1, 0.6, 0
    mask = torch.ones(1, 3, dtype=torch.bool)
    cold, _, w_cold = soft_persona_scores(u, p, mask, temperature=0.01)
    hot, _, w_hot = soft_persona_scores(u, p, mask, temperature=100.0)
    assert (cold * 0.01).item() == pytest.approx(1.0, abs=1e-3)  # τ → 0: the max cosine
    assert (hot * 100.0).item() == pytest.approx(1.6 / 3, abs=1e-2)  # τ → ∞: the mean cosine
    assert w_cold[0, 0] > 0.99 and torch.allclose(w_hot, torch.full((1, 3), 1 / 3), atol=1e-2)


def test_receiver_score_matches_embeddings_and_prefers_own_sentence(receiver):
    utts = ["i walk my dog every morning", "i teach math at school"]
    personas = [["i walk my dog every morning", "i like jazz"], ["i like jazz", "i collect stamps", "i run"]]
    out = receiver.score(utts, personas)
    assert out.scores.shape == (2,) and [len(s) for s in out.similarities] == [2, 3]
    u, p = receiver.embed(utts), receiver.embed(personas[1])
    assert torch.allclose(out.similarities[1], (p @ u[1]) / receiver.temperature, atol=1e-5)
    assert torch.allclose(out.weights[1].sum(), torch.tensor(1.0))
    # identical text has cosine 1, the largest possible: it dominates the softmax and the score
    assert out.similarities[0][0] == pytest.approx(1 / receiver.temperature, abs=1e-4)
    assert out.similarities[0].argmax() == 0
    other = receiver.score([utts[0]], [["i like jazz"]]).scores
    assert out.scores[0] > other[0]


def test_persona_cache_is_used_bounded_and_cleared(tokenizer):
    receiver = tiny_receiver(tokenizer, cache_size=3)
    calls = []
    receiver.encoder.register_forward_hook(lambda m, a, kw: calls.append(1))
    personas = [["i like jazz", "i run"]] * 4
    first = receiver.score(["hello"] * 4, personas).scores
    assert len(calls) == 2  # one call for the distinct utterance, one for the 2 distinct persona sentences
    second = receiver.score(["hello there"], [["i like jazz", "i run"]]).scores
    assert len(calls) == 3  # only the new utterance was encoded
    assert torch.allclose(first[:1], receiver.score(["hello"], [["i like jazz", "i run"]]).scores)
    receiver.score(["x"], [["a1", "b2", "c3", "d4"]])
    assert len(receiver._cache) <= 3
    receiver.train()
    assert len(receiver._cache) == 0
    assert second.shape == (1,)


def test_score_validates_input(receiver):
    with pytest.raises(ValueError, match="2 utterances but 1 personas"):
        receiver.score(["a", "b"], [["c"]])
    with pytest.raises(ValueError, match="at least one sentence"):
        receiver.score(["a"], [[]])
    with pytest.raises(ValueError, match="temperature"):
        Receiver(receiver.encoder, receiver.tokenizer, temperature=0.0)
    idx, mask = pad_personas([["a"], ["a", "b"]], {"a": 0, "b": 1})
    assert idx.tolist() == [[0, 0], [0, 1]] and mask.tolist() == [[True, False], [True, True]]


def test_save_load_round_trip(receiver, tmp_path):
    texts = ["i have a dog", "my favourite food is pizza", LONG]
    before = receiver.embed(texts)
    path = receiver.save_pretrained(tmp_path / "rcv")
    receiver.save_pretrained(tmp_path / "rcv")  # overwriting an existing directory works
    names = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "p2bot_receiver.json", "config.json"} <= names
    assert not any(n.endswith(".bin") for n in names)
    assert [p.name for p in tmp_path.iterdir()] == ["rcv"]  # no temp dirs left behind
    loaded = Receiver.from_pretrained(path)
    assert loaded.temperature == receiver.temperature and loaded.max_length == receiver.max_length
    assert torch.equal(loaded.embed(texts), before)
    assert Receiver.from_pretrained(path, temperature=2.0).temperature == 2.0


@pytest.mark.slow
def test_embedded_minilm_scores_a_revealing_utterance_higher():
    receiver = Receiver.from_pretrained("embedded")
    assert receiver.encoder.config.hidden_size == 384
    alone = receiver.embed(["i have two dogs"])[0]
    assert torch.allclose(alone, receiver.embed(["i have two dogs", LONG])[0], atol=1e-5)
    own = ["i have two dogs and a cat.", "i work as a nurse.", "i like to bake bread."]
    other = ["i drive a red truck.", "my favourite band is the beatles.", "i am a lawyer."]
    out = receiver.score(["my puppies woke me up at six again"] * 2, [own, other])
    assert out.scores[0] > out.scores[1]
    assert out.similarities[0].argmax().item() == 0
