"""``rl.loop.train``: logging through accelerate's trackers, one row per step across a resume, the policy's card."""

import json
import shutil

import pytest
from accelerate.utils import set_seed

from rl.config import PPOConfig
from rl.loop import train
from rl.selfplay import SelfPlayEnv
from rl.trainer import PPOTrainer, build_accelerator
from tests.rl.rl_fixtures import PromptFormatter, Transmitter, generate

PAIRS = [{"pair_id": f"p{i}", "persona_a": [f"i have {i} dogs."], "persona_b": ["i like tea."]} for i in range(4)]


def letter_e(prompts, completions, **kwargs):
    return [c.count("e") / (1 + len(c)) for c in completions]


def _run(model_dir, out, **overrides):
    cfg = PPOConfig(output_dir=str(out), max_steps=2, save_steps=1, save_total_limit=0, pairs_per_step=1,
                    rollouts_per_pair=2, min_exchanges=1, max_exchanges=1, response_length=4, num_ppo_epochs=1,
                    sample_log_steps=1, disable_tqdm=True, report_to=["tensorboard"], **overrides)
    set_seed(cfg.seed)
    policy = Transmitter.from_pretrained(str(model_dir), with_value_head=True)
    trainer = PPOTrainer(cfg, policy, None, accelerator=build_accelerator(cfg))
    env = SelfPlayEnv(PAIRS, PromptFormatter(policy.tokenizer, max_history_tokens=32), letter_e, pairs_per_step=1,
                      rollouts_per_pair=2, response_length=4, generate_fn=generate, seed=cfg.seed)
    train(trainer, env)
    trainer.accelerator.end_training()
    return trainer


def _tensorboard(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(out / "tracking" / "p2bot-rl"), size_guidance={"scalars": 0, "tensors": 0}).Reload()


def test_rl_logs_through_trackers_and_a_resume_logs_each_step_once(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    _run(tiny_model_dir, out)
    first = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    events = _tensorboard(out)
    assert [e.step for e in events.Scalars("objective/kl")] == [0, 1]
    assert [e.step for e in events.Tensors("samples/dialogues/text_summary")] == [0, 1]
    assert "| dialogue | persona_a | persona_b | transcript |" in \
        events.Tensors("samples/dialogues/text_summary")[0].tensor_proto.string_val[0].decode()
    card = (out / "checkpoint-2" / "policy" / "README.md").read_text()
    assert "- **Stage:** rl" in card and "| objective/kl |" in card and "sample" in card

    shutil.rmtree(out / "checkpoint-2")  # as if killed after step 1 was logged, before its checkpoint
    trainer = _run(tiny_model_dir, out, resume_from_checkpoint="latest")
    assert trainer.global_step == 2
    again = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in again] == [0, 1] and again[0] == first[0]
    assert [e.step for e in _tensorboard(out).Scalars("objective/kl")] == [0, 1]  # step 1 of the first run purged
    assert (out / "samples.txt").read_text().count("===== step 1 =====") == 1


def test_unknown_tracker_is_an_error(capsys):
    with pytest.raises(ValueError, match="report_to=.*unknown tracker 'tensorbord'"):
        PPOConfig(report_to=["tensorbord"])
    from launch.cli import main

    assert main(["rl", "--report_to", "tensorbord"]) == 2
    assert "unknown tracker 'tensorbord'" in capsys.readouterr().err
