"""Micro-batches: trimmed padding changes no log-prob, and token-weighted accumulation gives the one-pass gradient."""

import copy

import pytest
import torch

from rl.config import PPOConfig
from rl.experience import micro_batches, trim_left
from rl.forward import policy_forward
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import PromptFormatter, Transmitter
from tests.rl.test_episodes import dialogue_rollouts


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    torch.manual_seed(0)
    model = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    torch.nn.init.normal_(model.value_head.weight, std=0.5)
    return model


def experience(policy, layout="turn"):
    fmt = PromptFormatter(policy.tokenizer, max_history_tokens=1000)
    rollouts = dialogue_rollouts(fmt, "p0#0") + dialogue_rollouts(fmt, "p0#1", scores=(1, -2, 3, 0, 2, 1))
    cfg = PPOConfig(episode_layout=layout, pairs_per_step=1, rollouts_per_pair=2, max_steps=1, kl_coef=0.0,
                    entropy_coef=0.01)
    trainer = PPOTrainer(cfg, copy.deepcopy(policy))
    exp, rows = trainer.make_experience(rollouts)
    trainer.compute_advantages(exp, rows)
    return trainer, exp


def test_trimming_the_shared_left_padding_changes_no_logprob_or_value(policy):
    _, exp = experience(policy)
    short = exp.select(torch.tensor([0, 1]))  # the first turns: the shortest prompts, so most of L is padding
    trimmed = trim_left(short)
    assert trimmed.input_ids.shape[1] < short.input_ids.shape[1]
    with torch.no_grad():
        a = policy_forward(policy, short, with_values=True)
        b = policy_forward(policy, trimmed, with_values=True)
    mask = short.response_mask.bool()
    torch.testing.assert_close(b.logprobs[mask], a.logprobs[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.values[mask], a.values[mask], atol=1e-5, rtol=1e-5)


def _grads(trainer, parts):
    trainer.model.zero_grad()
    for mb, weight in parts:
        loss, _ = trainer._loss(mb)
        (loss * weight / len(parts)).backward()  # what accelerate's backward does with gradient accumulation
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layout,n", [("turn", 3), ("turn", 12), ("speaker", 2)])
def test_token_weighted_micro_batches_give_the_one_pass_gradient(policy, layout, n):
    trainer, exp = experience(policy, layout)
    rows = torch.randperm(len(exp), generator=torch.Generator().manual_seed(1))
    whole = _grads(trainer, [(exp.select(rows), 1.0)])
    parts = micro_batches(exp, rows, n)
    assert len(parts) == n and sum(w for _, w in parts) == pytest.approx(n)
    split = _grads(trainer, parts)
    assert whole.keys() == split.keys()
    scale = max(g.abs().max() for g in whole.values())
    for name, g in whole.items():
        torch.testing.assert_close(split[name], g, atol=1e-5 * float(scale), rtol=1e-4, msg=name)
    # unweighted accumulation (each micro-batch's mean counted equally) is a different gradient here
    plain = _grads(trainer, [(mb, 1.0) for mb, _ in parts])
    assert any(not torch.allclose(plain[k], g, atol=1e-4 * float(scale), rtol=1e-3) for k, g in whole.items())
