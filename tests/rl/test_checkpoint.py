import json

import pytest
import torch
from accelerate.utils import set_seed

from rl.checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint
from rl.config import PPOConfig
from rl.loop import train
from rl.selfplay import SelfPlayEnv
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import PromptFormatter, Transmitter, generate

PAIRS = [{"pair_id": f"p{i}", "persona_a": [f"i have {i} dogs."], "persona_b": ["i like tea."]} for i in range(4)]


def keyword_reward(prompts, completions, **kwargs):
    """Tokens of 'e' per character: cheap, deterministic and dependent on what was sampled."""
    return [c.count("e") / (1 + len(c)) for c in completions]


def _run(model_dir, out, **overrides):
    cfg = PPOConfig(output_dir=str(out), max_steps=2, save_steps=1, pairs_per_step=1, rollouts_per_pair=2,
                    min_exchanges=1, max_exchanges=1, response_length=4, learning_rate=1e-2, num_ppo_epochs=2,
                    adaptive_kl=True, target_kl=0.01, kl_horizon=10, kl_coef=0.1, disable_tqdm=True,
                    use_peft=False, **overrides)
    set_seed(cfg.seed)
    policy = Transmitter.from_pretrained(str(model_dir), with_value_head=True)
    ref = Transmitter.from_pretrained(str(model_dir))
    trainer = PPOTrainer(cfg, policy, ref)
    env = SelfPlayEnv(PAIRS, PromptFormatter(policy.tokenizer, max_history_tokens=32), keyword_reward,
                      pairs_per_step=1, rollouts_per_pair=2, response_length=4, generate_fn=generate, seed=cfg.seed)
    stats = train(trainer, env)
    return trainer, stats


def test_resume_continues_with_identical_state(tmp_path, tiny_model_dir):
    full, _ = _run(tiny_model_dir, tmp_path / "full")
    assert [p.name for p in list_checkpoints(tmp_path / "full")] == ["checkpoint-1", "checkpoint-2"]
    resumed, _ = _run(tiny_model_dir, tmp_path / "resumed", resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-1"))
    assert resumed.global_step == full.global_step == 2
    assert resumed.kl_ctl.value == full.kl_ctl.value != 0.1
    for (name, a), (_, b) in zip(full.policy.named_parameters(), resumed.policy.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    sa, sb = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k]["exp_avg"], sb[k]["exp_avg"], rtol=0, atol=0)
        assert float(sa[k]["step"]) == float(sb[k]["step"])
    # metrics and samples were written along the way
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1]
    assert {"loss/policy", "loss/value", "policy/approx_kl", "policy/clipfrac", "policy/entropy", "objective/kl"} <= lines[0].keys()
    assert "A:" in (tmp_path / "full" / "samples.txt").read_text()


def test_checkpoint_layout_is_atomic_and_rotated(tmp_path, tiny_model_dir):
    cfg = PPOConfig(output_dir=str(tmp_path), pairs_per_step=1, rollouts_per_pair=2, max_steps=5)
    trainer = PPOTrainer(cfg, Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True))
    for step in (1, 2, 3):
        trainer.global_step = step
        save_checkpoint(trainer, tmp_path, save_total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-3"]
    assert not list(tmp_path.glob(".tmp-*"))
    ckpt = tmp_path / "checkpoint-3"
    assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == 3
    assert list((ckpt / "state").glob("*.safetensors")) and list((ckpt / "policy").glob("*.safetensors"))
    assert resolve_checkpoint("latest", tmp_path) == ckpt
    assert resolve_checkpoint("latest", tmp_path / "nothing") is None
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(str(tmp_path / "missing"), tmp_path)
    # prune_keeps_policy: a checkpoint past the limit keeps only its policy/ (for p2bot select), and says so on resume
    trainer.global_step = 4
    save_checkpoint(trainer, tmp_path, save_total_limit=2, prune_keeps_policy=True)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert [p.name for p in (tmp_path / "checkpoint-2").iterdir()] == ["policy"]
    assert list((tmp_path / "checkpoint-2" / "policy").glob("*.safetensors"))
    assert (tmp_path / "checkpoint-3" / "state").is_dir() and resolve_checkpoint("latest", tmp_path).name == "checkpoint-4"
    with pytest.raises(FileNotFoundError, match="only its policy/ was kept"):
        load_checkpoint(trainer, tmp_path / "checkpoint-2")
