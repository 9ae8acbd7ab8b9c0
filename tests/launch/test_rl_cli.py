"""``p2bot rl`` end to end on a tiny policy: single process in-proc, and 2-process DeepSpeed (CPU/gloo) resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "rl"))
from tests.rl.rl_fixtures import build_tiny_model_dir, load_smollm2_tokenizer  # noqa: E402

REWARD = str(REPO / "tests" / "rl" / "toy_rewards.py") + ":letter_e"
TINY_RUN = ["--reward_funcs", REWARD, "--pairs_per_step", "1", "--rollouts_per_pair", "2", "--response_length", "6",
            "--max_exchanges", "1", "--save_steps", "1", "--disable_tqdm", "true", "--num_ppo_epochs", "2",
            "--learning_rate", "1e-2", "--adaptive_kl", "true", "--target_kl", "0.01", "--kl_horizon", "10"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_cli"), load_smollm2_tokenizer())


def test_rl_cli_single_process(tmp_path, tiny_dir):
    from launch.cli import main

    out = tmp_path / "run"
    rc = main(["rl", "--model_name_or_path", str(tiny_dir), "--output_dir", str(out), "--max_steps", "2",
               "--sample_log_steps", "1", *TINY_RUN])
    assert rc == 0
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1] and "reward/letter_e" in metrics[0]
    assert (out / "resolved_config.yaml").is_file() and (out / "checkpoint-2" / "policy" / "model.safetensors").is_file()
    assert "B:" in (out / "samples.txt").read_text()


def test_rl_cli_rejects_bad_config(capsys):
    from launch.cli import main

    assert main(["rl", "--algo", "a2c"]) == 2
    assert "algo" in capsys.readouterr().err


def _launch(config: str, args: list[str]) -> None:
    path = config if os.path.isabs(config) else str(REPO / "launch" / "configs" / "accelerate" / config)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", path, "-m", "launch.cli", "rl", *args]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def _assert_same_tree(a, b, where=""):
    if isinstance(a, torch.Tensor):
        # equal_nan: ZeRO-3 pads each rank's flat fp32 partition with uninitialised memory, which can read as NaN; both
        # runs carry the same padding bytes from checkpoint-1 (the exported weights are checked finite separately)
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tree(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, (int, float, bool)):
        assert a == b, where


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("accelerate_config, extra", [
    ("cpu_zero2.yaml", []), ("cpu_zero3.yaml", []), ("cpu_zero3.yaml", ["--copy_guard_coef", "1.0"]),
], ids=["zero2", "zero3", "zero3-copy_guard"])
def test_deepspeed_two_processes_resume_is_exact(tmp_path, tiny_dir, accelerate_config, extra):
    """Two iterations straight vs one, checkpoint, resume, one more: identical weights, Adam state, step, KL. The
    copy guard adds an auxiliary loss on the sharded policy's logits to each micro-batch."""
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    _launch(accelerate_config, ["--model_name_or_path", str(tiny_dir), "--output_dir", str(full), "--max_steps", "2",
                                *TINY_RUN, *extra])
    _launch(accelerate_config, ["--model_name_or_path", str(tiny_dir), "--output_dir", str(resumed), "--max_steps", "2",
                                "--resume_from_checkpoint", str(full / "checkpoint-1"), *TINY_RUN, *extra])
    a, b = full / "checkpoint-2", resumed / "checkpoint-2"
    state_a, state_b = json.loads((a / "trainer_state.json").read_text()), json.loads((b / "trainer_state.json").read_text())
    for state in (state_a, state_b):  # how far each run's own metrics/samples files had got: not model state
        del state["metrics_offset"], state["samples_offset"]
    assert state_a == state_b and state_a["global_step"] == 2 and state_a["kl_ctl"]["value"] != 0.05
    for name in ("model.safetensors", "p2bot_heads.safetensors"):  # the exported policy (gathered under ZeRO-3)
        exported = load_file(a / "policy" / name)
        assert all(t.isfinite().all() for t in exported.values()), name
        _assert_same_tree(exported, load_file(b / "policy" / name), name)
    # DeepSpeed's own shards: module weights and step counters, each rank's fp32 partition and Adam moments
    shards = sorted(p.name for p in (a / "state" / "pytorch_model").glob("*.pt"))
    assert len([s for s in shards if s.endswith("optim_states.pt")]) == 2
    for shard in shards:
        sa = torch.load(a / "state" / "pytorch_model" / shard, map_location="cpu", weights_only=False)
        sb = torch.load(b / "state" / "pytorch_model" / shard, map_location="cpu", weights_only=False)
        _assert_same_tree(sa, sb, shard)
        if "global_steps" in sa:
            assert sa["global_steps"] == 2 * 2  # 2 iterations x 2 epochs x 1 mini-batch
    metrics = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1]  # the resumed run only did the second iteration
    assert ("loss/copy_guard" in metrics[0]) == bool(extra)


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_two_processes_run_ppo_steps(tmp_path, tiny_dir):
    """``cpu_ddp.yaml``: two gloo DDP processes run two PPO iterations; the main process logs and checkpoints."""
    out = tmp_path / "ddp"
    _launch("cpu_ddp.yaml", ["--model_name_or_path", str(tiny_dir), "--output_dir", str(out), "--max_steps", "2", *TINY_RUN])
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1]  # written by the main process only
    trained = load_file(out / "checkpoint-2" / "policy" / "model.safetensors")
    start = load_file(tiny_dir / "model.safetensors")
    assert any(not torch.equal(trained[k], start[k]) for k in start), "the policy did not change"


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("variant", [
    ["--episode_layout", "speaker", "--advantage_estimator", "episode_gae", "--value_model_name_or_path", "{critic}"],
    ["--episode_layout", "speaker", "--algo", "grpo", "--partner", "lagged", "--partner_sync_steps", "1"],
], ids=["speaker-episode_gae-value_model", "speaker-grpo-lagged_partner"])
def test_zero2_layouts_and_critics_resume_exactly(tmp_path, tiny_dir, variant):
    """ZeRO-2 on 2 gloo processes: 2 iterations straight vs 1 + resume + 1 give the same policy, critic and partner."""
    critic = build_tiny_model_dir(tmp_path / "critic", load_smollm2_tokenizer(), seed=7)
    args = [a.replace("{critic}", str(critic)) for a in variant]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    _launch("cpu_zero2.yaml", ["--model_name_or_path", str(tiny_dir), "--output_dir", str(full), "--max_steps", "2",
                               *TINY_RUN, *args])
    _launch("cpu_zero2.yaml", ["--model_name_or_path", str(tiny_dir), "--output_dir", str(resumed), "--max_steps", "2",
                               "--resume_from_checkpoint", str(full / "checkpoint-1"), *TINY_RUN, *args])
    a, b = full / "checkpoint-2", resumed / "checkpoint-2"
    exported = ["policy/model.safetensors"]
    exported += ["critic/model.safetensors", "critic/p2bot_heads.safetensors"] if "--value_model_name_or_path" in args \
        else ["lagged_partner.safetensors"]
    for name in exported:
        _assert_same_tree(load_file(a / name), load_file(b / name), name)
    start = load_file(tiny_dir / "model.safetensors")
    assert any(not torch.equal(load_file(a / "policy/model.safetensors")[k], start[k]) for k in start)
    if "lagged" in args:  # synced after every step: the partner is the policy of step 2
        partner, policy = load_file(a / "lagged_partner.safetensors"), load_file(a / "policy/model.safetensors")
        assert all(torch.equal(partner[f"lm.{k}"], policy[k]) for k in policy)
    for shard in sorted(p.name for p in (a / "state" / "pytorch_model").glob("*.pt")):
        sa = torch.load(a / "state" / "pytorch_model" / shard, map_location="cpu", weights_only=False)
        sb = torch.load(b / "state" / "pytorch_model" / shard, map_location="cpu", weights_only=False)
        _assert_same_tree(sa, sb, shard)


@pytest.mark.distributed
@pytest.mark.slow
def test_a_rank_whose_rollouts_all_score_none_still_finishes(tmp_path, tiny_dir):
    """DDP on 2 gloo processes; every rollout of rank 0 scores None: both ranks keep the same rows, agree on the
    metric keys and finish; the policy still learns from rank 1's rollouts. Rank 0 has no copy-guard positions (no
    scored turn), yet reports the guard's keys as rank 1 does (the processes average the same metrics)."""
    out = tmp_path / "ddp_none"
    reward = str(REPO / "tests" / "rl" / "toy_rewards.py") + ":letter_e_on_rank1_only"
    args = [a if a != REWARD else reward for a in TINY_RUN] + ["--copy_guard_coef", "1.0"]
    _launch("cpu_ddp.yaml", ["--model_name_or_path", str(tiny_dir), "--output_dir", str(out), "--max_steps", "2", *args])
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1]
    assert all("reward/letter_e_on_rank1_only" in m and m["guard/skipped_update"] == 0.0 for m in metrics)
    assert all("loss/copy_guard" in m and "copy_guard/positions" in m for m in metrics)
    trained = load_file(out / "checkpoint-2" / "policy" / "model.safetensors")
    start = load_file(tiny_dir / "model.safetensors")
    assert any(not torch.equal(trained[k], start[k]) for k in start)


@pytest.mark.distributed
@pytest.mark.slow
def test_zero3_init_flag_with_the_default_p2_rewards_and_a_frozen_partner(tmp_path, tiny_dir, tiny_receiver_dir):
    """``zero3_init_flag: true`` (as in multi_gpu_zero3.yaml) partitions models at load time: the frozen reference,
    partner and scorers (Receiver included) must be loaded outside it, or they cannot run (was: "'weight' must be 2-D")."""
    config = (REPO / "launch" / "configs" / "accelerate" / "cpu_zero3.yaml").read_text()
    assert "zero3_init_flag: false" in config
    path = tmp_path / "zero3_init.yaml"
    path.write_text(config.replace("zero3_init_flag: false", "zero3_init_flag: true"))
    out = tmp_path / "run"
    rewards = ["persona", "fluency", "coherence", "repetition", "degeneration"]
    args = [a for a in TINY_RUN]
    args[args.index("--reward_funcs") + 1: args.index("--reward_funcs") + 2] = rewards
    _launch(str(path), ["--model_name_or_path", str(tiny_dir), "--receiver_name_or_path", str(tiny_receiver_dir),
                        "--partner", "frozen", "--output_dir", str(out), "--max_steps", "1", *args])
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0]
    assert all(f"reward/{r}" in metrics[0] for r in rewards) and metrics[0]["guard/skipped_update"] == 0.0
