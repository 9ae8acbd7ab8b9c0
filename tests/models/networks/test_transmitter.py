import json

import pytest
import torch
from peft import LoraConfig
from transformers import LlamaForCausalLM

from models.networks.transmitter import HEADS_FILE, META_FILE, Transmitter, pad_batch
from models.prompting.prompt import PromptFormatter
from tests.models.transmitter_fixtures import HISTORY, PERSONA, save_tiny_lm, smollm2_tokenizer, tiny_transmitter

RESPONSES = ["i went to the alps.", "pizza is the best food!", "my cats are asleep."]


@pytest.fixture(scope="module")
def fmt():
    return PromptFormatter(smollm2_tokenizer())


def _pairs(fmt):
    ctx = fmt.encode_context(PERSONA, HISTORY)
    return [ctx] * len(RESPONSES), [fmt.encode_response(r) for r in RESPONSES]


def test_forward_shapes_and_nup_position():
    t = tiny_transmitter(with_value_head=True)
    ids, mask = pad_batch([[5, 6, 7, 8], [9, 10]], t.tokenizer.pad_token_id)
    out = t(ids, mask, nup_index=torch.tensor([3, 1]), with_values=True)
    assert out.logits.shape == (2, 4, len(t.tokenizer)) and out.values.shape == (2, 4) and out.nup_logits.shape == (2,)
    hidden = t.lm(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(out.nup_logits, t.nup_head(hidden[[0, 1], [3, 1]]).squeeze(-1), atol=1e-6)
    assert torch.allclose(out.values, t.value_head(hidden).squeeze(-1), atol=1e-6)
    with pytest.raises(ValueError, match="value head"):
        tiny_transmitter()(ids, mask, with_values=True)


def test_left_and_right_padding_agree(fmt):
    t = tiny_transmitter()
    ctxs, resps = _pairs(fmt)
    seqs = [c + r for c, r in zip(ctxs, resps)]
    right = t.score_nup(ctxs, resps)
    ids, mask = pad_batch(seqs, t.tokenizer.pad_token_id, side="left")
    with torch.no_grad():
        left = t(ids, mask, nup_index=torch.full((len(seqs),), ids.size(1) - 1)).nup_logits
    assert torch.allclose(right, left, atol=1e-5)
    single = torch.cat([t.score_nup([c], [r]) for c, r in zip(ctxs, resps)])
    assert torch.allclose(right, single, atol=1e-5)


def test_nup_head_gets_gradients_and_reaches_trunk(fmt):
    t = tiny_transmitter().train()
    ctxs, resps = _pairs(fmt)
    ids, mask = pad_batch([c + r for c, r in zip(ctxs, resps)], t.tokenizer.pad_token_id)
    nup = t(ids, mask, nup_index=mask.sum(-1) - 1, return_logits=False).nup_logits
    torch.nn.functional.binary_cross_entropy_with_logits(nup, torch.tensor([1.0, 0.0, 0.0])).backward()
    assert t.nup_head.weight.grad.abs().sum() > 0 and t.nup_head.bias.grad.abs() > 0
    assert t.lm.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_score_candidates_matches_naive(fmt):
    t = tiny_transmitter()
    ctxs, resps = _pairs(fmt)
    nup, token_lp = t.score_candidates(ctxs[0], resps)
    assert torch.allclose(nup, t.score_nup(ctxs, resps), atol=1e-4)
    for r, lp in zip(resps, token_lp):
        seq = torch.tensor([ctxs[0] + r])
        with torch.no_grad():
            logp = torch.log_softmax(t.lm(seq).logits[0].float(), -1)
        start = len(ctxs[0])
        naive = logp[start - 1: start - 1 + len(r)].gather(-1, torch.tensor(r)[:, None]).squeeze(-1)
        assert lp.shape == (len(r),) and torch.allclose(lp, naive, atol=1e-4)


def test_save_load_round_trip_identical(tmp_path, fmt):
    t = tiny_transmitter(with_value_head=True)
    with torch.no_grad():  # make the heads differ from a fresh initialisation
        t.nup_head.weight.add_(0.5)
        t.value_head.bias.fill_(0.25)
    t.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / HEADS_FILE).is_file() and (tmp_path / "m" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "m" / META_FILE).read_text())["with_value_head"] is True
    u = Transmitter.from_pretrained(tmp_path / "m")
    assert u.value_head is not None
    ctxs, resps = _pairs(fmt)
    ids, mask = pad_batch([c + r for c, r in zip(ctxs, resps)], t.tokenizer.pad_token_id)
    kw = dict(nup_index=mask.sum(-1) - 1, with_values=True)
    with torch.no_grad():
        a, b = t(ids, mask, **kw), u(ids, mask, **kw)
    for x, y in ((a.logits, b.logits), (a.values, b.values), (a.nup_logits, b.nup_logits)):
        assert torch.equal(x, y)


def test_plain_checkpoint_gets_deterministic_fresh_heads(tmp_path, fmt):
    save_tiny_lm(tmp_path / "hf")
    a, b = Transmitter.from_pretrained(str(tmp_path / "hf")), Transmitter.from_pretrained(str(tmp_path / "hf"))
    assert a.value_head is None and torch.equal(a.nup_head.weight, b.nup_head.weight)
    assert a.nup_head.weight.std() > 0
    assert Transmitter.from_pretrained(str(tmp_path / "hf"), with_value_head=True).value_head.weight.abs().sum() == 0


def test_lora_trains_only_adapters_and_heads_and_round_trips(tmp_path, fmt):
    save_tiny_lm(tmp_path / "base")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    t = Transmitter.from_pretrained(str(tmp_path / "base"), lora=lora, with_value_head=True)
    assert t.is_peft
    before = {n: p.detach().clone() for n, p in t.named_parameters()}
    opt = torch.optim.SGD([p for p in t.parameters() if p.requires_grad], lr=0.5)
    ctxs, resps = _pairs(fmt)
    ids, mask = pad_batch([c + r for c, r in zip(ctxs, resps)], t.tokenizer.pad_token_id)
    t.train()
    for _ in range(2):
        out = t(ids, mask, nup_index=mask.sum(-1) - 1, with_values=True)
        loss = out.logits.float().logsumexp(-1).mean() + out.nup_logits.sum() + out.values.pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in t.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n or n.startswith(("nup_head", "value_head")) for n in changed)
    assert any("lora_B" in n for n in changed) and any(n.startswith("nup_head") for n in changed)
    t.eval()
    t.save_pretrained(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "lora" / "model.safetensors").exists()
    u = Transmitter.from_pretrained(str(tmp_path / "lora"))
    with torch.no_grad():
        a = t(ids, mask, nup_index=mask.sum(-1) - 1, with_values=True)
        b = u(ids, mask, nup_index=mask.sum(-1) - 1, with_values=True)
    assert torch.allclose(a.logits, b.logits, atol=1e-5) and torch.equal(a.nup_logits, b.nup_logits)
    assert torch.equal(a.values, b.values)
    with pytest.raises(ValueError, match="LoRA"):
        Transmitter.from_pretrained(str(tmp_path / "lora"), lora=lora)
    u.merge_lora()
    assert isinstance(u.lm, LlamaForCausalLM)
    with torch.no_grad():
        assert torch.allclose(u(ids, mask).logits, a.logits, atol=1e-4)


def test_save_is_atomic_overwrite(tmp_path):
    t = tiny_transmitter()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "stale.txt").write_text("old")
    t.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp directories left behind


def _drop_lm_head(directory):
    from safetensors.torch import load_file, save_file

    state = load_file(str(directory / "model.safetensors"))
    state.pop("lm_head.weight")
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})


def test_an_untied_checkpoint_without_lm_head_weight_is_refused_by_directory(tmp_path):
    t = tiny_transmitter(seed=2)  # tiny_lm has tie_word_embeddings=False
    t.save_pretrained(tmp_path / "m")
    _drop_lm_head(tmp_path / "m")
    with pytest.raises(RuntimeError, match=r"m: .*lm_head\.weight"):
        tiny_transmitter(seed=4).load_weights(tmp_path / "m")
    with pytest.raises(RuntimeError, match=r"m: the checkpoint lacks \['lm_head\.weight'\]"):
        Transmitter.from_pretrained(tmp_path / "m")


def test_a_tied_checkpoint_loads_without_lm_head_weight(tmp_path):
    from transformers import LlamaConfig

    tok = smollm2_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(1)
    t = Transmitter(LlamaForCausalLM(cfg).eval(), tok)
    t.save_pretrained(tmp_path / "m")
    torch.manual_seed(2)
    u = Transmitter(LlamaForCausalLM(cfg).eval(), tok)
    u.load_weights(tmp_path / "m")  # the saved file holds the embedding once; lm_head is that tensor
    assert torch.equal(u.lm.lm_head.weight, t.lm.lm_head.weight)
    assert torch.equal(Transmitter.from_pretrained(tmp_path / "m").lm.lm_head.weight, t.lm.lm_head.weight)


def test_a_p2bot_checkpoint_without_its_heads_file_is_refused(tmp_path):
    tiny_transmitter(seed=2).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / HEADS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=f"{META_FILE}.*without its {HEADS_FILE}"):
        Transmitter.from_pretrained(tmp_path / "m")


def test_a_value_head_promised_by_the_meta_but_absent_from_the_heads_file_is_refused(tmp_path):
    tiny_transmitter(seed=2).save_pretrained(tmp_path / "m")  # saved without a value head
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    (tmp_path / "m" / META_FILE).write_text(json.dumps({**meta, "with_value_head": True}))
    with pytest.raises(ValueError, match="value_head"):
        Transmitter.from_pretrained(tmp_path / "m")
