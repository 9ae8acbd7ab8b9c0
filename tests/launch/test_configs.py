"""Every shipped accelerate config and experiment YAML parses; the CPU-runnable experiment runs a step."""

import json
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig

from launch.config_io import parse_configs
from rl.config import PPOConfig

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = sorted((REPO / "launch" / "configs" / "accelerate").glob("*.yaml"))
# recipes (p2bot recipe: a mapping per stage) are parsed stage by stage in tests/launch/test_recipe_cli.py
EXPERIMENTS = sorted(p for p in (REPO / "launch" / "configs" / "experiments").glob("*.yaml")
                     if "heldout_dialogues" not in yaml.safe_load(p.read_text()))


def test_the_recipes_are_all_there():
    names = {p.stem for p in ACCELERATE}
    assert {"cpu_zero2", "cpu_zero3", "single_gpu", "multi_gpu_zero2", "multi_gpu_zero3", "small_gpu_lora"} <= names
    assert {"seed_convai2", "spc_ppo", "custom_reward", "lora_small_gpu", "p2_sample",
            "receiver_spc"} <= {p.stem for p in EXPERIMENTS}


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.stem)
def test_accelerate_config_loads(path):
    cfg = ClusterConfig.from_yaml_file(str(path))
    raw = yaml.safe_load(path.read_text())
    assert cfg.distributed_type == raw["distributed_type"] and cfg.num_processes >= 1
    if raw["distributed_type"] == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] in (2, 3)
    if path.stem.startswith("cpu"):
        assert cfg.num_processes == 2


def _config_types(path: Path) -> tuple[type, ...]:
    """``receiver_*.yaml`` configure ``p2bot receiver``, ``*_trl.yaml`` ``p2bot rl-trl``; every other experiment is a
    ``p2bot rl`` run."""
    if path.stem.endswith("_trl"):
        from launch.commands.rl_trl import CONFIG_TYPES

        return CONFIG_TYPES
    if path.stem.startswith("receiver_"):
        from launch.commands.receiver import ReceiverDataConfig
        from models.training.receiver_training import ReceiverTrainingConfig

        return ReceiverDataConfig, ReceiverTrainingConfig
    return (PPOConfig,)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_yaml_parses_into_its_config(path):
    configs = parse_configs(_config_types(path), ["--config", str(path)], prog="test")
    raw = yaml.safe_load(path.read_text())
    for key, value in raw.items():
        owners = [cfg for cfg in configs if hasattr(cfg, key)]
        assert owners, f"{path.name}: unknown field {key!r}"
        assert getattr(owners[0], key) == value, key


def test_custom_reward_experiment_runs_a_step_on_cpu(tmp_path, monkeypatch):
    """The user's reward file is swapped in by YAML alone; one PPO step on a tiny policy."""
    sys.path.insert(0, str(REPO / "tests" / "rl"))
    from launch.cli import main
    from tests.rl.rl_fixtures import build_tiny_model_dir, load_smollm2_tokenizer

    monkeypatch.chdir(REPO)  # the YAML names launch/examples/length_reward.py relative to the repo
    tiny = build_tiny_model_dir(tmp_path / "tiny", load_smollm2_tokenizer())
    out = tmp_path / "run"
    rc = main(["rl", "--config", str(REPO / "launch/configs/experiments/custom_reward.yaml"),
               "--model_name_or_path", str(tiny), "--output_dir", str(out), "--max_steps", "1",
               "--pairs_per_step", "1", "--rollouts_per_pair", "2", "--response_length", "4", "--max_exchanges", "1",
               "--save_steps", "0", "--disable_tqdm", "true"])
    assert rc == 0
    (row,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for name in ("reward/persona", "reward/fluency", "reward/coherence", "reward/repetition", "reward/length"):
        assert name in row


@pytest.mark.slow
@pytest.mark.parametrize("name", ["p2_sample", "spc_ppo"])
def test_cpu_rl_experiment_runs_a_step(name, tmp_path, monkeypatch, spc_valid_path, cache_env):
    """The CPU-sized PPO recipes run as written (data, rewards, schedule), on a tiny policy and a shortened run."""
    sys.path.insert(0, str(REPO / "tests" / "rl"))
    from launch.cli import main
    from tests.rl.rl_fixtures import build_tiny_model_dir, load_smollm2_tokenizer

    monkeypatch.chdir(REPO)
    tiny = build_tiny_model_dir(tmp_path / "tiny", load_smollm2_tokenizer())
    out = tmp_path / "run"
    data = ["--data", str(spc_valid_path)] if name == "spc_ppo" else []  # its `data:` is a path the user provides
    rc = main(["rl", "--config", str(REPO / f"launch/configs/experiments/{name}.yaml"), *data, "--model_name_or_path", str(tiny),
               "--output_dir", str(out), "--max_steps", "1", "--pairs_per_step", "1", "--rollouts_per_pair", "2",
               "--response_length", "4", "--max_exchanges", "1", "--save_steps", "0", "--disable_tqdm", "true"])
    assert rc == 0
    (row,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for reward in yaml.safe_load((REPO / f"launch/configs/experiments/{name}.yaml").read_text())["reward_funcs"]:
        assert f"reward/{reward}" in row, reward


@pytest.mark.slow
def test_receiver_spc_experiment_runs_a_step(tmp_path, monkeypatch, spc_valid_path, cache_env, tiny_receiver_dir):
    from launch.cli import main

    monkeypatch.chdir(REPO)
    out = tmp_path / "receiver"
    rc = main(["receiver", "--config", str(REPO / "launch/configs/experiments/receiver_spc.yaml"), "--data", str(spc_valid_path),
               "--model_name_or_path",
               str(tiny_receiver_dir), "--output_dir", str(out), "--max_steps", "1", "--max_eval_examples", "50",
               "--skip_baselines", "true", "--save_steps", "0"])
    assert rc == 0
    metrics = json.loads((out / "receiver_metrics.json").read_text())
    assert metrics["eval_dialogues"] == 200 and metrics["train_dialogues"] == 799 and metrics["steps"] == 1
    assert metrics["results"]["trained receiver"]["num_candidates"] == 20


def test_the_profiled_rl_config_is_the_recipes_rl_stage():
    experiments = REPO / "launch" / "configs" / "experiments"
    recipe = yaml.safe_load((experiments / "p2_spc.yaml").read_text())["rl"]
    profiled = yaml.safe_load((experiments / "p2_spc_rl.yaml").read_text())
    own = {"output_dir", "model_name_or_path", "receiver_name_or_path", "data", "skip_dialogues", "min_exchanges",
           "report_to"}  # what a standalone run needs, and two exchanges from the first iteration
    assert {k: v for k, v in profiled.items() if k not in own} == {k: v for k, v in recipe.items() if k not in own}
    assert profiled["min_exchanges"] == profiled["max_exchanges"] == recipe["max_exchanges"]


def test_the_trl_config_is_the_recipes_rl_stage_in_trls_trainer():
    """Same rewards, history budget, turn length and exchanges as the recipe's rl:, the same dialogues per generation
    (pairs_per_step x rollouts_per_pair) and optimizer steps per generation (num_ppo_epochs), KL and learning rate."""
    experiments = REPO / "launch" / "configs" / "experiments"
    recipe = yaml.safe_load((experiments / "p2_spc.yaml").read_text())["rl"]
    trl = yaml.safe_load((experiments / "p2_spc_trl.yaml").read_text())
    assert trl["reward_funcs"] == recipe["reward_funcs"]
    for key in ("response_length", "max_history_tokens", "learning_rate"):
        assert trl[key] == recipe[key], key
    assert trl["exchanges"] == recipe["max_exchanges"] and trl["beta"] == recipe["kl_coef"]
    assert trl["num_generations"] == recipe["rollouts_per_pair"]
    assert trl["per_device_train_batch_size"] == recipe["pairs_per_step"] * recipe["rollouts_per_pair"]
    assert trl["num_iterations"] == recipe["num_ppo_epochs"]
    assert trl["max_steps"] == recipe["max_steps"] * recipe["num_ppo_epochs"]
