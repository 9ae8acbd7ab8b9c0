"""``p2bot rl``: PPO (or REINFORCE) self-play on persona pairs; run it under ``accelerate launch`` for DDP/DeepSpeed.

Reads the persona pairs, loads the policy (with value head; LoRA with ``--use_peft``), the reference and the
rewards, then hands over to ``rl.loop.train``. Writes the resolved config, ``metrics.jsonl``, ``samples.txt`` and
``checkpoint-<step>/`` into ``--output_dir``; ``--resume_from_checkpoint latest`` continues a run exactly.
"""

from __future__ import annotations

import os

from accelerate.utils import set_seed

from data_prep import build_selfplay_pairs
from launch.commands.sft import load_dialogues
from launch.config_io import parse_configs, save_resolved_config
from launch.errors import option, require_inputs
from models.prompt import PromptFormatter
from models.transmitter import Transmitter
from rewards import ScorerPool, build_composite
from rl.config import PPOConfig
from rl.loop import train
from rl.selfplay import Sampling, SelfPlayEnv
from rl.trainer import PPOTrainer, build_accelerator, zero_stage

DTYPES = {None: None, "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def lora_config(cfg: PPOConfig):
    if not cfg.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")


def build_env(cfg: PPOConfig, formatter, reward_fn, partner, accelerator) -> SelfPlayEnv:
    dialogues = load_dialogues(cfg.data_path or "", cfg.data_format, cfg.skip_dialogues, cfg.max_dialogues)
    pairs = build_selfplay_pairs(dialogues, with_first_utterance=cfg.use_first_utterance, seed=cfg.seed)
    if len(pairs) == 0:
        raise ValueError(f"{cfg.data_path or 'sample data'}: no dialogue with both personas in the selected range")
    return SelfPlayEnv(
        list(pairs), formatter, reward_fn, pairs_per_step=cfg.pairs_per_step, rollouts_per_pair=cfg.rollouts_per_pair,
        sampling_a=Sampling(True, cfg.temperature, cfg.top_k, cfg.top_p),
        sampling_b=Sampling(cfg.partner_do_sample, cfg.partner_temperature, cfg.partner_top_k, cfg.partner_top_p),
        response_length=cfg.response_length, stop_on_eos=cfg.stop_token == "eos", partner=partner,
        train_partner_turns=cfg.train_partner_turns, use_first_utterance=cfg.use_first_utterance, seed=cfg.seed,
        process_index=accelerator.process_index, num_processes=accelerator.num_processes,
        reuse_kv_cache=cfg.reuse_kv_cache,
    )


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    (cfg,) = parse_configs((PPOConfig,), argv, prog="p2bot rl", description=__doc__)
    require_inputs(data={"--data_path": cfg.data_path},
                   models={"--model_name_or_path": cfg.model_name_or_path,
                           "--ref_model_name_or_path": cfg.ref_model_name_or_path,
                           "--partner_model_name_or_path": cfg.partner_model_name_or_path},
                   receivers={"--receiver_name_or_path": cfg.receiver_name_or_path})
    accelerator = build_accelerator(cfg)
    set_seed(cfg.seed, device_specific=True)  # different sampling per process, reproducible per rank
    if accelerator.is_main_process:
        save_resolved_config(cfg.output_dir, cfg)
    dtype = DTYPES[cfg.torch_dtype]
    policy = Transmitter.from_pretrained(cfg.model_name_or_path, with_value_head=cfg.algo == "ppo",
                                         lora=lora_config(cfg), torch_dtype=dtype)
    ref = None
    if not cfg.use_peft and cfg.kl_coef > 0:  # with LoRA the reference is the adapter-disabled policy
        ref = Transmitter.from_pretrained(cfg.ref_model_name_or_path or cfg.model_name_or_path, torch_dtype=dtype)
    partner = None
    if cfg.partner_model_name_or_path:
        partner = Transmitter.from_pretrained(cfg.partner_model_name_or_path, torch_dtype=dtype).to(accelerator.device)
        partner.eval().requires_grad_(False)
    formatter = PromptFormatter(policy.tokenizer, max_history_tokens=cfg.max_history_tokens)
    # The rewards' frozen scorer is the reference itself when there is one on this device (no second copy).
    shared = ref if (ref is not None and zero_stage(accelerator) != 3) else None
    pool = ScorerPool(policy=cfg.ref_model_name_or_path or cfg.model_name_or_path, receiver=cfg.receiver_name_or_path,
                      transmitter=shared, torch_dtype=dtype)
    reward_fn = build_composite(cfg.reward_funcs, cfg.reward_weights, pool=pool)
    trainer = PPOTrainer(cfg, policy, ref, reward_fn, accelerator)
    if hasattr(reward_fn, "setup"):
        reward_fn.setup(accelerator)
    with option("--data_path"):
        env = build_env(cfg, formatter, reward_fn, partner, accelerator)
    stats = train(trainer, env)
    accelerator.print(f"[p2bot rl] done: step {trainer.global_step}, "
                      f"scores {stats.get('objective/scores', float('nan')):.4f}, kl {stats.get('objective/kl', float('nan')):.4f}; "
                      f"outputs in {cfg.output_dir}")
    accelerator.end_training()
    return 0
