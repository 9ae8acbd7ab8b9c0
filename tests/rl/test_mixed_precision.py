"""bf16 autocast (``PPOConfig.bf16``): bfloat16 matrix products, float32 weights, gradients and optimizer state."""

import copy

import pytest
import torch

from rl.config import PPOConfig
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import PromptFormatter, Transmitter
from tests.rl.test_episodes import dialogue_rollouts


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    torch.manual_seed(0)
    return Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)


def test_bf16_autocast_keeps_fp32_weights_and_gives_close_logprobs(policy):
    fmt = PromptFormatter(policy.tokenizer, max_history_tokens=1000)
    rollouts = dialogue_rollouts(fmt, "p0#0", temperature=1.0) + dialogue_rollouts(fmt, "p0#1", temperature=1.0)
    got = {}
    for bf16 in (False, True):
        cfg = PPOConfig(bf16=bf16, pairs_per_step=1, rollouts_per_pair=2, max_steps=1, kl_coef=0.0, learning_rate=1e-3)
        trainer = PPOTrainer(cfg, copy.deepcopy(policy))
        seen = []
        hook = trainer.policy.lm.lm_head.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.dtype))
        exp, rows = trainer.make_experience(rollouts)
        hook.remove()
        assert seen and set(seen) == {torch.bfloat16 if bf16 else torch.float32}
        before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}
        trainer.compute_advantages(exp, rows)
        trainer.update(exp)
        params = dict(trainer.policy.named_parameters())
        assert all(params[n].dtype == torch.float32 for n in before)
        assert any(not torch.equal(params[n], p) for n, p in before.items()), "the update changed the weights"
        state = trainer.optimizer.state_dict()["state"]
        assert state and all(s["exp_avg"].dtype == torch.float32 for s in state.values())
        got[bf16] = exp.old_logprobs[exp.response_mask.bool()]
    assert got[True].dtype == torch.float32
    torch.testing.assert_close(got[True], got[False], atol=0.1, rtol=0.05)
    assert not torch.equal(got[True], got[False]), "bf16 products round differently from fp32"
