"""The separate critic (``PolicyWithCritic``) and the lagged partner (``LaggedPartner``) on tiny models."""

import pytest
import torch

from models.networks.critic import PolicyWithCritic
from rl.config import PPOConfig
from rl.experience import Rollout
from rl.partner import LaggedPartner
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import Transmitter, build_tiny_model_dir


@pytest.fixture(scope="module")
def critic_dir(tmp_path_factory, smollm2_tokenizer):
    return build_tiny_model_dir(tmp_path_factory.mktemp("critic"), smollm2_tokenizer, seed=5)


def test_values_come_from_the_critic_and_both_train(tiny_model_dir, critic_dir):
    policy = Transmitter.from_pretrained(str(tiny_model_dir))
    critic = Transmitter.from_pretrained(str(critic_dir), with_value_head=True)
    torch.nn.init.normal_(critic.value_head.weight, std=0.5)
    trainer = PPOTrainer(PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=1, learning_rate=1e-2), policy,
                         value_model=critic)
    assert isinstance(trainer.policy, PolicyWithCritic) and policy.value_head is None
    rollouts = [Rollout([1, 2, 3], [4, 5], score=1.0), Rollout([1, 2], [6], score=-1.0)]
    exp, _ = trainer.make_experience(rollouts)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        expected = critic(ids, torch.ones_like(ids), with_values=True).values[0, 2:4]
    torch.testing.assert_close(exp.old_values[0], expected, atol=1e-5, rtol=1e-4)
    before_p = policy.lm.lm_head.weight.detach().clone()
    before_c = critic.value_head.weight.detach().clone()
    stats = trainer.step(rollouts)
    assert "loss/value" in stats
    assert not torch.equal(policy.lm.lm_head.weight, before_p) and not torch.equal(critic.value_head.weight, before_c)


def test_a_critic_with_another_tokenizer_is_refused(tiny_model_dir, critic_dir):
    from transformers import AutoTokenizer

    from models.loading.embedded import embedded_receiver_path

    critic = Transmitter.from_pretrained(str(critic_dir), with_value_head=True)
    critic.tokenizer = AutoTokenizer.from_pretrained(embedded_receiver_path())  # BERT's vocabulary
    with pytest.raises(ValueError, match="tokenizer"):
        PolicyWithCritic(Transmitter.from_pretrained(str(tiny_model_dir)), critic)


def test_lagged_partner_copies_only_trainable_weights_and_round_trips(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    def lora_transmitter():
        t = Transmitter.from_pretrained(str(tiny_model_dir))
        t.lm = get_peft_model(t.lm, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], lora_dropout=0.0))
        t.nup_head.requires_grad_(False)  # as the trainer does: RL trains the adapters only
        return t

    policy, partner_model = lora_transmitter(), lora_transmitter()
    names = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    partner = LaggedPartner(partner_model, sync_steps=3)
    assert [partner.due(s) for s in (1, 2, 3, 6)] == [False, False, True, True]
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(1.0)
    base_before = {n: p.clone() for n, p in partner_model.named_parameters() if n not in names}
    partner.sync(policy, step=3)
    assert partner.names == names
    params = dict(partner_model.named_parameters())
    policy_params = dict(policy.named_parameters())
    assert all(torch.equal(params[n], policy_params[n]) for n in names)
    assert all(torch.equal(params[n], v) for n, v in base_before.items())  # the frozen base is never copied
    partner.save(tmp_path)
    fresh = LaggedPartner(lora_transmitter(), sync_steps=3)
    fresh.load(tmp_path)
    assert fresh.synced_at == 3
    fresh_params = dict(fresh.model.named_parameters())
    assert all(torch.equal(fresh_params[n], params[n]) for n in names)
    with pytest.raises(FileNotFoundError, match="lagged_partner"):
        fresh.load(tmp_path / "nowhere")
