import pytest
import torch
from transmitter_fixtures import HISTORY, PERSONA, smollm2_tokenizer, tiny_transmitter

from models.generation import generate, stop_token_ids
from models.prompt import PromptFormatter


@pytest.fixture(scope="module")
def setup():
    t = tiny_transmitter(seed=3)
    fmt = PromptFormatter(t.tokenizer)
    contexts = [fmt.encode_context(PERSONA[: i + 1], HISTORY[: 3 - i]) for i in range(3)]
    return t, contexts


def _greedy_no_cache(t, ctx, n, stops):
    """Seed-style reference: re-run the whole sequence for every new token."""
    seq = list(ctx)
    for _ in range(n):
        with torch.no_grad():
            nxt = int(t.lm(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax())
        seq.append(nxt)
        if nxt in stops:
            break
    return seq[len(ctx):]


def test_batched_left_padded_greedy_matches_unbatched_no_cache(setup):
    t, contexts = setup
    assert len({len(c) for c in contexts}) == 3  # real left padding happens
    batched = generate(t, contexts, max_new_tokens=8)
    stops = stop_token_ids(t.tokenizer)
    assert batched == [_greedy_no_cache(t, c, 8, stops) for c in contexts]
    assert generate(t, contexts, max_new_tokens=8, batch_size=2) == batched


def test_outputs_stop_at_end_marker(setup):
    t, contexts = setup
    end = PromptFormatter(t.tokenizer).end_token_id
    assert end in stop_token_ids(t.tokenizer)
    with torch.no_grad():  # make the end marker the most likely token everywhere
        t2 = tiny_transmitter(seed=3)
        t2.lm.lm_head.weight[end] += 50.0 * t2.lm.lm_head.weight.abs().max()
        t2.lm.model.norm.weight.abs_()
    for row in generate(t2, contexts, max_new_tokens=8):
        assert row[-1] in stop_token_ids(t.tokenizer) and all(x not in stop_token_ids(t.tokenizer) for x in row[:-1])


def test_sampling_and_beam_search(setup):
    t, contexts = setup
    torch.manual_seed(0)
    sampled = generate(t, contexts, max_new_tokens=6, do_sample=True, temperature=1.5, top_k=50, top_p=0.95)
    assert len(sampled) == 3 and all(1 <= len(r) <= 6 for r in sampled)
    torch.manual_seed(0)
    again = generate(t, contexts, max_new_tokens=6, do_sample=True, temperature=1.5, top_k=50, top_p=0.95)
    assert again == sampled
    beams = generate(t, contexts, max_new_tokens=6, num_beams=3)
    assert len(beams) == 3 and all(1 <= len(r) <= 6 for r in beams)


def test_empty_inputs(setup):
    t, _ = setup
    assert generate(t, [], max_new_tokens=4) == []
    with pytest.raises(ValueError, match="at least one token"):
        generate(t, [[]], max_new_tokens=4)


def test_stop_ids_of_plain_tokenizer():
    tok = smollm2_tokenizer()
    assert stop_token_ids(tok)[0] == tok.eos_token_id
