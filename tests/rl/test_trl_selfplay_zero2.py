"""``p2bot rl-trl`` under ``accelerate launch`` with DeepSpeed ZeRO-2 on two CPU processes (gloo), one GRPO step.

Without CUDA, TRL's ``GRPOTrainer`` (a Hugging Face ``Trainer``) needs ``--ddp_backend gloo``: its
``TrainingArguments`` builds accelerate's ``PartialState`` with ``backend=ddp_backend``; left at None, DeepSpeed still
forms its 2-process group, but the state counts one process (``backend is None``), so the DeepSpeed config gets
``train_batch_size = 1 x per_device x accumulation`` and ``deepspeed.initialize`` stops with "train_batch_size is not
equal to micro_batch_per_gpu * gradient_acc_step * world_size 2 != 2 * 1 * 2". And ``--bf16 false``: GRPOConfig
defaults to bf16, which ``TrainingArguments`` rejects without a GPU unless ``use_cpu`` ("Your setup doesn't support
bf16/gpu"); ``use_cpu`` stays false here, as in the accelerate config, so DeepSpeed forms the process group.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
MARKS_ENV = "P2BOT_TEST_RANK_MARKS"
REWARD = "tests.rl.test_trl_selfplay_zero2:letter_e_by_rank"  # imported by each launched process (cwd: REPO)


def letter_e_by_rank(prompts, completions, **kwargs):
    """``letter_e``, and a line per call in ``$P2BOT_TEST_RANK_MARKS/rank<R>.jsonl``: which process scored which
    dialogues, in a process group of which size and backend."""
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    mark = {"rank": rank, "world_size": dist.get_world_size() if dist.is_initialized() else 1,
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "dialogues": sorted(set(kwargs.get("dialogue_id", [])))}
    with open(Path(os.environ[MARKS_ENV]) / f"rank{rank}.jsonl", "a") as f:
        f.write(json.dumps(mark) + "\n")
    return [c.count("e") / (1 + len(c)) for c in completions]


@pytest.mark.distributed
@pytest.mark.slow
def test_rl_trl_zero2_two_cpu_processes_one_step(tmp_path, tiny_model_dir):
    out, marks = tmp_path / "run", tmp_path / "marks"
    marks.mkdir()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "launch" / "configs" / "accelerate" / "cpu_zero2.yaml"), "--num_processes", "2",
           "-m", "launch.cli", "rl-trl", "--model", str(tiny_model_dir), "--max_dialogues", "4",
           "--output_dir", str(out), "--reward_funcs", REWARD, "--partner", "frozen",
           "--exchanges", "1", "--response_length", "4", "--max_steps", "1", "--per_device_train_batch_size", "2",
           "--num_generations", "2", "--learning_rate", "1e-2", "--report_to", "none", "--save_strategy", "steps",
           "--save_steps", "1", "--disable_tqdm", "true", "--logging_steps", "1", "--seed", "0",
           "--bf16", "false", "--ddp_backend", "gloo"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **{MARKS_ENV: str(marks)})
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "[p2bot rl-trl] done: step 1" in proc.stdout + proc.stderr

    # both processes generated and scored their own dialogues, in one 2-process gloo group
    rows = {r: [json.loads(x) for x in (marks / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)}
    assert all(len(rows[r]) == 1 and rows[r][0]["world_size"] == 2 and rows[r][0]["backend"] == "gloo"
               for r in (0, 1)), rows
    pairs = [{d.split("#")[0] for d in rows[r][0]["dialogues"]} for r in (0, 1)]
    assert all(len(p) == 1 for p in pairs) and pairs[0] != pairs[1], pairs  # one group (2 dialogues) of its own each

    # DeepSpeed ZeRO-2 ran: the checkpoint holds one optimizer-state partition per rank
    ckpt = out / "checkpoint-1"
    assert len(list(ckpt.rglob("*optim_states.pt"))) == 2, sorted(p.name for p in ckpt.rglob("*"))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["global_step"] == 1 and "rewards/letter_e_by_rank/mean" in state["log_history"][0]

    # the saved policy is the tiny model, trained
    trained, start = load_file(out / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    assert trained.keys() == start.keys()
    assert all(t.isfinite().all() for t in trained.values())
    assert any(not torch.equal(trained[k], start[k]) for k in start), "the policy did not change"
    assert (out / "resolved_config.yaml").is_file()
