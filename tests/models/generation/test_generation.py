import pytest
import torch

from models.generation.sampling import generate, stop_token_ids
from models.prompting.prompt import PromptFormatter
from tests.models.transmitter_fixtures import HISTORY, PERSONA, smollm2_tokenizer, tiny_transmitter


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


def test_stop_tokens_come_from_generation_config_and_the_end_of_turn():
    from transformers import GenerationConfig

    from tests.models.prompting.chat_tokenizers import chat_tokenizer

    tok = chat_tokenizer("llama3")
    eot, eos = tok.convert_tokens_to_ids("<|eot_id|>"), tok.eos_token_id
    assert stop_token_ids(tok) == [eos, eot]
    assert stop_token_ids(tok, GenerationConfig(eos_token_id=[eos, 7, eot])) == [eos, 7, eot]
    assert stop_token_ids(tok, GenerationConfig(eos_token_id=9)) == [eos, 9, eot]
    gemma = chat_tokenizer("gemma")
    assert gemma.convert_ids_to_tokens(stop_token_ids(gemma)) == ["<eos>", "<end_of_turn>"]


@pytest.mark.parametrize("stop", ["<end_of_turn>", "generation_config"])
def test_generation_stops_at_the_template_end_of_turn_and_the_configured_eos(stop):
    from models.networks.transmitter import Transmitter
    from tests.models.prompting.chat_tokenizers import chat_tokenizer
    from tests.models.transmitter_fixtures import tiny_lm

    tok = chat_tokenizer("gemma")
    t = Transmitter(tiny_lm(tok, seed=1), tok, base_name="tiny")
    ctx = PromptFormatter(tok).encode_context(PERSONA, HISTORY)
    free = generate(t, [ctx], max_new_tokens=6, eos_token_id=tok.pad_token_id)[0]  # greedy, no real stop
    x = free[2]
    assert len(free) == 6 and x not in free[:2] and not set(free[:3]) & set(stop_token_ids(tok))
    if stop == "generation_config":  # the model's own config names x as an EOS
        t.lm.generation_config.eos_token_id = x
        assert generate(t, [ctx], max_new_tokens=6) == [free[:3]]
    else:  # swap the output rows of x and <end_of_turn>: the model now ends its turn where it said x
        eot = tok.convert_tokens_to_ids("<end_of_turn>")
        with torch.no_grad():
            w = t.lm.lm_head.weight
            w[[x, eot]] = w[[eot, x]]
        assert generate(t, [ctx], max_new_tokens=6) == [free[:2] + [eot]]


@pytest.mark.parametrize("backend", ["static", "continuous"])
def test_other_backends_give_the_same_greedy_outputs_and_stops(backend):
    from models.generation.sampling import generate
    from tests.models.transmitter_fixtures import tiny_transmitter

    t = tiny_transmitter(seed=6)
    contexts = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]
    hf = generate(t, contexts, max_new_tokens=6)
    other = generate(t, contexts, max_new_tokens=6, backend=backend)
    assert other == hf and all(len(r) == 6 for r in hf)
    stop = hf[1][2]  # row 1 now ends at its third token, included; the others where (if) they say it
    hf_stop = generate(t, contexts, max_new_tokens=6, eos_token_id=stop)
    assert hf_stop[1] == hf[1][:3]
    assert generate(t, contexts, max_new_tokens=6, eos_token_id=stop, backend=backend) == hf_stop
    with pytest.raises(ValueError, match="backend"):
        generate(t, contexts, backend="vllm")


def test_continuous_backend_samples_reproducibly_under_a_torch_seed():
    from models.generation.sampling import generate
    from tests.models.transmitter_fixtures import tiny_transmitter

    t = tiny_transmitter(seed=6)
    contexts = [[5, 6, 7, 8], [9, 10]]
    draws = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        draws.append(generate(t, contexts, max_new_tokens=8, do_sample=True, backend="continuous"))
    assert draws[0] == draws[1] and draws[0] != draws[2]
    with pytest.raises(ValueError, match="beam"):
        generate(t, contexts, num_beams=2, backend="continuous")
