"""A user-defined ``AuxLoss`` joins the update through the interface alone: its per-row data travels with the
mini- and micro-batches, and its gradient moves the policy."""

import pytest
import torch

from rl.config import PPOConfig
from rl.experience import Rollout, collate
from rl.guards import AuxLoss, build_aux_losses
from rl.guards.copy_guard import CopyGuardLoss
from rl.losses import masked_mean
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import Transmitter


class RaiseTarget(AuxLoss):
    """Raises, at every trained token of a row, the log-probability of that row's ``info['target']`` token."""

    name = "raise_target"
    needs_logits = True

    def __init__(self, coef):
        self.coef = coef
        self.calls = 0

    def prepare(self, exp, rows):
        exp.aux[self.name] = torch.tensor([row[0].info["target"] for row in rows], device=exp.input_ids.device)  # (B,)

    def loss(self, out, mb):
        self.calls += 1
        logp = out.logits.log_softmax(-1)  # (B, R, V)
        target = mb.aux[self.name][:, None, None].expand(*logp.shape[:2], 1)
        mean = masked_mean(logp.gather(-1, target).squeeze(-1), mb.response_mask)
        return -mean, {"raise_target/logprob": mean.detach()}


QUERIES = [[1, 2, 3], [7, 8, 9]]
TARGETS = [40, 41]


def _prob(trainer, query, token):
    exp = collate([Rollout(query, [token], score=0.0)], trainer.pad_token_id)
    with torch.no_grad():
        logits = trainer._forward(trainer.model, exp, False, with_logits=True).logits
    return float(logits[0, 0].softmax(-1)[token])


def _trainer(tiny_model_dir, aux_losses, **overrides):
    torch.manual_seed(0)
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=False)
    # rloo with equal scores in each group: zero advantages, so only the auxiliary term has a gradient
    cfg = PPOConfig(**{**dict(algo="rloo", kl_coef=0.0, pairs_per_step=1, rollouts_per_pair=2, max_steps=4,
                              num_ppo_epochs=2, learning_rate=1e-2, gradient_accumulation_steps=2), **overrides})
    return PPOTrainer(cfg, policy, aux_losses=aux_losses)


def _rollouts():
    return [Rollout(q, [5, 6, 7], score=1.0, group="g", info={"target": t}) for q, t in zip(QUERIES, TARGETS)]


@pytest.mark.parametrize("coef", [0.0, 1.0])
def test_a_user_aux_loss_moves_each_row_towards_its_own_target(tiny_model_dir, coef):
    aux = RaiseTarget(coef)
    trainer = _trainer(tiny_model_dir, [aux])
    before = [[_prob(trainer, q, t) for t in TARGETS] for q in QUERIES]
    for _ in range(trainer.config.max_steps):
        stats = trainer.step(_rollouts())
    after = [[_prob(trainer, q, t) for t in TARGETS] for q in QUERIES]
    assert aux.calls == trainer.config.max_steps * 2 * 2  # steps x epochs x micro-batches
    assert "loss/raise_target" in stats and "raise_target/logprob" in stats
    if coef == 0.0:  # no advantage, no auxiliary weight: the policy does not move
        assert sum(after, []) == pytest.approx(sum(before, []), rel=1e-5)
    else:  # each row's own target rose, and far more than the other row's (the per-row data followed its row)
        for i in range(2):
            assert after[i][i] > 20 * before[i][i], (before, after)
            assert after[i][i] / before[i][i] > 10 * after[i][1 - i] / before[i][1 - i], (before, after)


def test_aux_losses_come_from_the_config_and_need_unique_names(tiny_model_dir, smollm2_tokenizer):
    assert build_aux_losses(PPOConfig(), smollm2_tokenizer) == []
    (guard,) = build_aux_losses(PPOConfig(copy_guard_coef=2.0, copy_guard_threshold=0.6), smollm2_tokenizer)
    assert isinstance(guard, CopyGuardLoss) and guard.coef == 2.0 and guard.guard.threshold == 0.6
    trainer = _trainer(tiny_model_dir, [RaiseTarget(1.0)], copy_guard_coef=1.0)
    assert [a.name for a in trainer.aux_losses] == ["copy_guard", "raise_target"]
    with pytest.raises(ValueError, match="own name"):
        _trainer(tiny_model_dir, [RaiseTarget(1.0), RaiseTarget(2.0)])
