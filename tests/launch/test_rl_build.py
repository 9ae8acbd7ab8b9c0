"""What ``p2bot rl`` loads: one model copy with LoRA (policy = reference = scorer base), the SFT model as the
reference of a LoRA-SFT start, everything in the policy's dtype (KL ≈ 0 at step 0 under bf16)."""

import sys
from pathlib import Path

import pytest
import torch

from launch.commands.rl import build_run
from rl.config import PPOConfig
from rl.trainer import build_accelerator

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "rl"))
from tests.rl.rl_fixtures import build_tiny_model_dir, load_smollm2_tokenizer  # noqa: E402

REWARDS = ["fluency", "coherence", "persona", "degeneration"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_build"), load_smollm2_tokenizer())


def _cfg(tmp_path, model, receiver, **kw):
    return PPOConfig(model_name_or_path=str(model), receiver_name_or_path=str(receiver), reward_funcs=REWARDS,
                     output_dir=str(tmp_path / "rl"), pairs_per_step=1, rollouts_per_pair=2, max_exchanges=1,
                     response_length=4, max_history_tokens=32, max_steps=1, num_ppo_epochs=1, **kw)


def _lm_copies(run) -> tuple[int, int]:
    """Distinct causal-LM weight sets held by the run, and their parameters (tied/shared storage counted once)."""
    models = [run.trainer.policy, run.ref, run.partner, run.pool._transmitter]
    seen, copies, params = set(), 0, 0
    for m in models:
        if m is None:
            continue
        ptrs = {p.data_ptr() for p in m.lm.parameters()}
        if ptrs & seen:
            continue
        seen |= ptrs
        copies += 1
        params += sum(p.numel() for p in {p.data_ptr(): p for p in m.lm.parameters()}.values())
    return copies, params


def test_lora_holds_one_copy_and_scores_with_the_adapter_disabled(tmp_path, tiny, tiny_receiver_dir):
    run = build_run(_cfg(tmp_path, tiny, tiny_receiver_dir, use_peft=True, lora_r=2), build_accelerator(PPOConfig()))
    run.env.score(run.env.rollout(run.trainer.policy, 0, 1))  # the rewards load whatever they load lazily
    assert run.ref is None and run.pool._transmitter is run.trainer.policy and run.pool.disable_adapter
    full_run = build_run(_cfg(tmp_path, tiny, tiny_receiver_dir), build_accelerator(PPOConfig()))
    full_run.env.score(full_run.env.rollout(full_run.trainer.policy, 0, 1))
    assert full_run.pool._transmitter is full_run.ref  # no LoRA: the reference doubles as the frozen scorer
    (lora_copies, lora_params), (full_copies, full_params) = _lm_copies(run), _lm_copies(full_run)
    assert lora_copies == 1 and full_copies == 2
    assert full_params > 1.9 * lora_params  # a second base model is not loaded with LoRA


def test_a_frozen_partner_of_the_start_model_is_the_reference_not_a_second_copy(tmp_path, tiny, tiny_receiver_dir):
    run = build_run(_cfg(tmp_path, tiny, tiny_receiver_dir, partner="frozen"), build_accelerator(PPOConfig()))
    assert run.partner is run.ref and _lm_copies(run)[0] == 2  # policy, and reference = partner = scorer
    other = build_tiny_model_dir(tmp_path / "other_partner", load_smollm2_tokenizer())
    run = build_run(_cfg(tmp_path, tiny, tiny_receiver_dir, partner="frozen", partner_model_name_or_path=str(other)),
                    build_accelerator(PPOConfig()))
    assert run.partner is not run.ref and _lm_copies(run)[0] == 3


def test_rl_from_a_lora_sft_checkpoint_starts_from_and_refers_to_the_sft_model(tmp_path, tiny, tiny_receiver_dir):
    from peft import LoraConfig

    from models.networks.transmitter import Transmitter

    sft = Transmitter.from_pretrained(str(tiny), lora=LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"],
                                                                 task_type="CAUSAL_LM"))
    with torch.no_grad():  # a trained SFT adapter: not zero
        for n, p in sft.lm.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    sft_dir = sft.save_pretrained(tmp_path / "sft_lora")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        sft_logits = sft.lm(input_ids=ids).logits
    run = build_run(_cfg(tmp_path, sft_dir, tiny_receiver_dir, use_peft=True, lora_r=2), build_accelerator(PPOConfig()))
    policy = run.trainer.policy
    with torch.no_grad(), policy.lm.disable_adapter():  # the reference (and scorer) is the SFT model itself
        torch.testing.assert_close(policy.lm(input_ids=ids).logits, sft_logits, atol=1e-4, rtol=1e-4)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("value_head") for n in trainable)
    with torch.no_grad():  # trained RL adapters, saved and loaded again: SFT adapters merged, RL adapters on top
        for n, p in policy.lm.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
        rl_logits = policy.lm(input_ids=ids).logits
    reloaded = Transmitter.from_pretrained(str(policy.save_pretrained(tmp_path / "rl_policy")))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.lm(input_ids=ids).logits, rl_logits, atol=1e-4, rtol=1e-4)
        with reloaded.lm.disable_adapter():
            torch.testing.assert_close(reloaded.lm(input_ids=ids).logits, sft_logits, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(rl_logits, sft_logits, atol=1e-3)


def test_bf16_reference_and_scorers_share_the_policy_dtype(tmp_path, tiny, tiny_receiver_dir):
    run = build_run(_cfg(tmp_path, tiny, tiny_receiver_dir, torch_dtype="bfloat16"), build_accelerator(PPOConfig()))
    for model in (run.trainer.policy.lm, run.ref.lm, run.pool.transmitter().lm):
        assert next(model.parameters()).dtype == torch.bfloat16
    batch = run.env.rollout(run.trainer.policy, 0, 1)
    run.env.score(batch)
    stats = run.trainer.step(batch.trainable)
    assert abs(stats["objective/kl"]) < 1e-3  # the policy and its reference are the same bf16 weights at step 0
