import math

import pytest
import torch

from rl.config import PPOConfig
from rl.experience import Rollout, collate
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import Transmitter, build_peaked_model_dir, generate

PROMPTS = ["hello there", "i like dogs", "what do you do", "my name is sam"]


def _prompts(tok):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in PROMPTS]


def _sample(trainer, contexts, max_new_tokens=8):
    with trainer.generation_model() as model:
        return generate(model, contexts, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0, top_p=1.0)


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_collate_positions_predict_response_tokens():
    exp = collate([Rollout([5, 6, 7], [8, 9], score=1.0), Rollout([1], [2, 3, 4], score=0.0)], pad_token_id=0)
    assert exp.input_ids.tolist() == [[5, 6, 7, 8, 9, 0], [0, 0, 1, 2, 3, 4]]
    assert exp.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert exp.response_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    # every row's response starts at column Q = 3: the logits at positions 2, 3, 4 predict its tokens
    assert exp.response_index.tolist() == [[2, 3, 4], [2, 3, 4]]
    assert exp.turn_ids.tolist() == [[0, 0, -1], [0, 0, 0]] and exp.turn_scores.shape == (2, 1)
    # the logit at position p predicts token p+1
    for row in range(2):
        for k in range(int(exp.response_mask[row].sum())):
            assert exp.input_ids[row, exp.response_index[row, k] + 1] == exp.response_ids[row, k]


def test_old_logprobs_match_a_direct_forward(tiny_model_dir):
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    trainer = PPOTrainer(PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=1), policy)
    q, r = [10, 11, 12], [13, 14]
    exp, _ = trainer.make_experience([Rollout(q, r, score=1.0), Rollout([7], [8, 9, 10, 11], score=0.0)])
    with torch.no_grad():
        logits = policy.lm(input_ids=torch.tensor([q + r])).logits.log_softmax(-1)[0]
    expected = [logits[2, 13].item(), logits[3, 14].item()]
    assert exp.old_logprobs[0, :2].tolist() == pytest.approx(expected, abs=1e-4)
    with torch.no_grad():  # the left-padded row sees the same positions as an unpadded forward
        logits = policy.lm(input_ids=torch.tensor([[7, 8, 9, 10, 11]])).logits.log_softmax(-1)[0]
    expected = [logits[k, t].item() for k, t in enumerate([8, 9, 10, 11])]
    assert exp.old_logprobs[1].tolist() == pytest.approx(expected, abs=1e-4)
    assert exp.ref_logprobs is None  # no reference and no LoRA: no KL term


@pytest.mark.slow
def test_ppo_learns_to_say_the_target_token(tmp_path, smollm2_tokenizer):
    """PPO raises the rate of a rewarded token on a tiny policy, with the KL to the reference staying bounded."""
    model_dir, active = build_peaked_model_dir(tmp_path / "peaked", smollm2_tokenizer)
    target = active[0]
    torch.manual_seed(0)
    policy = Transmitter.from_pretrained(str(model_dir), with_value_head=True)
    policy.lm.get_input_embeddings().requires_grad_(False)  # CPU time: 49k x 32 embeddings need not move
    ref = Transmitter.from_pretrained(str(model_dir))
    cfg = PPOConfig(learning_rate=2e-2, kl_coef=0.05, num_ppo_epochs=2, num_mini_batches=1, pairs_per_step=4,
                    rollouts_per_pair=4, max_steps=12, vf_coef=0.1)
    trainer = PPOTrainer(cfg, policy, ref)
    contexts = [p for p in _prompts(smollm2_tokenizer) for _ in range(4)]
    history = []
    for _ in range(cfg.max_steps):
        outs = _sample(trainer, contexts)
        rollouts = [Rollout(c, o, score=sum(t == target for t in o) / max(1, len(o))) for c, o in zip(contexts, outs)]
        stats = trainer.step(rollouts)
        history.append(stats)
        for key in ("loss/policy", "loss/value", "policy/approx_kl", "policy/clipfrac", "policy/entropy", "objective/kl"):
            assert math.isfinite(stats[key]), key
    start = sum(s["objective/scores"] for s in history[:3]) / 3
    end = sum(s["objective/scores"] for s in history[-3:]) / 3
    assert end > start + 0.15, f"mean reward {start:.3f} -> {end:.3f}"
    assert max(s["objective/kl"] for s in history) < 15.0  # nats per 8-token response
    assert trainer.global_step == cfg.max_steps


def test_nan_scores_skip_the_update(tiny_model_dir):
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    trainer = PPOTrainer(PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=2, learning_rate=1e-2), policy)
    before = _params(trainer.policy)
    stats = trainer.step([Rollout([1, 2], [3, 4], score=float("nan")), Rollout([1, 2], [5, 6], score=1.0)])
    assert stats["guard/skipped_update"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in trainer.policy.named_parameters())
    stats = trainer.step([Rollout([1, 2], [3, 4], score=0.0), Rollout([1, 2], [5, 6], score=1.0)])
    assert stats["guard/skipped_update"] == 0.0
    assert any(not torch.equal(before[k], v) for k, v in trainer.policy.named_parameters())


def test_nonfinite_loss_skips_the_optimizer_step(tiny_model_dir, monkeypatch):
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    trainer = PPOTrainer(PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=1, num_ppo_epochs=1), policy)
    before = _params(trainer.policy)
    real_loss = trainer._loss
    monkeypatch.setattr(trainer, "_loss", lambda mb: (real_loss(mb)[0] * float("inf"), real_loss(mb)[1]))
    stats = trainer.step([Rollout([1, 2], [3, 4], score=0.0), Rollout([1, 2], [5, 6], score=1.0)])
    assert stats["guard/skipped_microbatches"] == 1.0 and stats["guard/skipped_optimizer_steps"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in trainer.policy.named_parameters())


def test_reinforce_uses_group_baseline_and_no_value_head(tiny_model_dir):
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=False)
    cfg = PPOConfig(algo="reinforce", pairs_per_step=1, rollouts_per_pair=2, max_steps=1, num_ppo_epochs=1,
                    whiten_advantages=False, kl_coef=0.0)
    trainer = PPOTrainer(cfg, policy)
    rollouts = [Rollout([1, 2], [3, 4], score=1.0, group="g"), Rollout([1, 2], [5], score=3.0, group="g"),
                Rollout([1, 2], [6], score=7.0, group="h")]
    exp, rows = trainer.make_experience(rollouts)
    trainer.compute_advantages(exp, rows)
    assert exp.advantages.tolist() == [[-1.0, -1.0], [1.0, 0.0], [0.0, 0.0]]
    stats = trainer.step(rollouts)
    assert "loss/value" not in stats and math.isfinite(stats["loss/policy"])


def test_ppo_requires_value_head(tiny_model_dir):
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=False)
    with pytest.raises(ValueError, match="value head"):
        PPOTrainer(PPOConfig(), policy)


def test_lora_reference_is_the_adapter_free_base(tiny_model_dir):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True, lora=lora)
    cfg = PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=3, learning_rate=5e-2, num_ppo_epochs=2)
    trainer = PPOTrainer(cfg, policy)
    rollouts = [Rollout([1, 2, 3], [4, 5, 6], score=1.0), Rollout([1, 2, 3], [7, 8, 9], score=-1.0)]
    first = trainer.step(rollouts)
    assert first["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # adapters start as the identity
    second = trainer.step(rollouts)
    assert second["objective/kl"] != pytest.approx(0.0, abs=1e-4)  # the policy moved away from the frozen base
    trainable = {n for n, p in trainer.policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "value_head" in n for n in trainable)


def test_gradient_checkpointing_gives_the_same_update(tiny_model_dir):
    """Recomputing activations in backward changes memory, not the result: same parameters after one step."""
    rollouts = [Rollout([1, 2, 3], [4, 5, 6], score=1.0), Rollout([7, 8], [9, 10, 11], score=-1.0)]
    after = {}
    for flag in (False, True):
        torch.manual_seed(0)
        policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
        cfg = PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=1, num_ppo_epochs=1, learning_rate=1e-2,
                        gradient_checkpointing=flag, gradient_accumulation_steps=2)
        trainer = PPOTrainer(cfg, policy)
        assert trainer.policy.lm.is_activation_checkpointing == flag
        trainer.step(rollouts)
        after[flag] = _params(trainer.policy)
    assert after[False].keys() == after[True].keys()
    for k in after[False]:
        assert torch.allclose(after[False][k], after[True][k], atol=1e-6), k


def test_a_rollout_scored_none_keeps_its_row_with_no_weight(tiny_model_dir):
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    trainer = PPOTrainer(PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=1), policy)
    rollouts = [Rollout([1, 2], [3, 4], score=None), Rollout([1, 2], [5, 6], score=1.0, components={"x": 2.0})]
    exp, _ = trainer.make_experience(rollouts)
    assert len(exp) == 2 and exp.response_mask[0].sum() == 0 and exp.turn_mask.tolist() == [[0.0], [1.0]]
    stats = trainer.step(rollouts)
    assert stats["guard/skipped_update"] == 0.0 and stats["reward/x"] == 2.0
