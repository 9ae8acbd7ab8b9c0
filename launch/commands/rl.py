"""``p2bot rl``: PPO (or REINFORCE) self-play on persona pairs; run it under ``accelerate launch`` for DDP/DeepSpeed.

Reads the persona pairs, loads the policy (with value head; LoRA with ``--use_peft``), the reference and the
rewards, then hands over to ``rl.loop.train``. Writes the resolved config, ``metrics.jsonl``, ``samples.txt`` and
``checkpoint-<step>/`` into ``--output_dir``; ``--resume_from_checkpoint latest`` continues a run exactly.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from accelerate.utils import set_seed

from data_prep import build_selfplay_pairs
from launch.commands.sft import load_dialogues
from launch.config_io import parse_configs, save_resolved_config
from launch.errors import option, require_inputs
from models.networks.transmitter import Transmitter
from models.prompting.prompt import PromptFormatter
from models.scoring.scorers import LogprobMemo
from models.training.lora import lora_config
from rewards import ScorerPool, build_composite
from rl.config import PPOConfig
from rl.loop import train
from rl.partner import LaggedPartner
from rl.selfplay import Sampling, SelfPlayEnv
from rl.trainer import PPOTrainer, build_accelerator, zero_stage

DTYPES = {None: None, "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def build_env(cfg: PPOConfig, formatter, reward_fn, partner, accelerator) -> SelfPlayEnv:
    dialogues = load_dialogues(cfg.data or "", cfg.data_format, cfg.skip_dialogues, cfg.max_dialogues)
    pairs = build_selfplay_pairs(dialogues, with_first_utterance=cfg.use_first_utterance, seed=cfg.seed)
    if len(pairs) == 0:
        raise ValueError(f"{cfg.data or 'sample data'}: no dialogue with both personas in the selected range")
    return SelfPlayEnv(
        list(pairs), formatter, reward_fn, pairs_per_step=cfg.pairs_per_step, rollouts_per_pair=cfg.rollouts_per_pair,
        sampling_a=Sampling(True, cfg.temperature, cfg.top_k, cfg.top_p),
        sampling_b=Sampling(cfg.partner_do_sample, cfg.partner_temperature, cfg.partner_top_k, cfg.partner_top_p),
        response_length=cfg.response_length, stop_on_eos=cfg.stop_token == "eos", partner=partner,
        train_partner_turns=cfg.train_partner_turns, use_first_utterance=cfg.use_first_utterance, seed=cfg.seed,
        process_index=accelerator.process_index, num_processes=accelerator.num_processes,
        reuse_kv_cache=cfg.reuse_kv_cache, generation_backend=cfg.generation_backend,
    )


@contextlib.contextmanager
def frozen_load(accelerator):
    """A context for loading models that stay frozen and outside the DeepSpeed engine (reference, partner, scorers):
    under ZeRO-3 with ``zero3_init_flag`` transformers would otherwise partition them at load time, with no engine
    to gather them. (accelerate's ``zero3_init_context_manager(enable=False)`` re-registers the same ZeRO-3 config
    with transformers, so it does not prevent that: the config is unregistered here and registered again after.)"""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or not plugin.is_zero3_init_enabled():
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()


def load_transmitter(path: str, *, dtype=None, with_value_head: bool = False, lora=None, flag: str = "--model_name_or_path"):
    """A Transmitter to start RL from. A LoRA-SFT checkpoint's adapter is merged first, so the SFT model is the start
    point (and, with ``--use_peft``, the adapter-disabled reference); ``lora`` then adds fresh RL adapters."""
    with option(flag, path):
        model = Transmitter.from_pretrained(path, with_value_head=with_value_head, torch_dtype=dtype)
    if model.is_peft:  # new adapters then record the LoRA-SFT checkpoint as their base (reloaded: merged again)
        model.merge_lora()
        model.base_name = path
    if lora is not None:
        from peft import get_peft_model

        model.lm = get_peft_model(model.lm, lora)
    return model


def freeze(model):
    model.eval().requires_grad_(False)
    return model


@dataclass
class Run:
    """Everything ``p2bot rl`` builds before training: what tests inspect to count the models loaded."""

    trainer: PPOTrainer
    env: SelfPlayEnv
    pool: ScorerPool
    ref: object | None
    partner: object | None


def build_run(cfg: PPOConfig, accelerator) -> Run:
    dtype = DTYPES[cfg.torch_dtype]
    policy = load_transmitter(cfg.model_name_or_path, dtype=dtype, lora=lora_config(cfg),
                              with_value_head=cfg.algo == "ppo" and not cfg.value_model_name_or_path)
    value_model = None
    if cfg.value_model_name_or_path:
        value_model = load_transmitter(cfg.value_model_name_or_path, dtype=dtype, with_value_head=True,
                                       flag="--value_model_name_or_path")
    zero3 = zero_stage(accelerator) == 3
    with frozen_load(accelerator):
        ref = None
        if not cfg.use_peft and cfg.kl_coef > 0:  # with LoRA the reference is the adapter-disabled policy (the SFT model)
            ref = freeze(load_transmitter(cfg.ref_model_name_or_path or cfg.model_name_or_path, dtype=dtype,
                                          flag="--ref_model_name_or_path"))
        partner = lagged = None
        partner_path = cfg.partner_model_name_or_path or cfg.model_name_or_path
        if cfg.partner == "frozen" and ref is not None and not zero3 and partner_path == (
                cfg.ref_model_name_or_path or cfg.model_name_or_path):
            partner = ref.to(accelerator.device)  # the same frozen weights: one copy plays the partner and the reference
        elif cfg.partner == "frozen":
            partner = freeze(load_transmitter(partner_path, dtype=dtype,
                                              flag="--partner_model_name_or_path")).to(accelerator.device)
        elif cfg.partner == "lagged":  # the same architecture as the policy; synced from it when the trainer starts
            partner = freeze(load_transmitter(cfg.model_name_or_path, dtype=dtype, lora=lora_config(cfg))).to(accelerator.device)
            lagged = LaggedPartner(partner, cfg.partner_sync_steps)
        # fluency/coherence score with a model that is already here: the reference, or with LoRA the policy itself
        # with its adapter disabled; under ZeRO-3 those are partitioned, so the pool loads its own frozen copy
        shared = None if zero3 else (policy if cfg.use_peft else ref)
        pool_model = shared
        if pool_model is None and any(_needs_transmitter(r) for r in cfg.reward_funcs):
            pool_model = freeze(load_transmitter(cfg.ref_model_name_or_path or cfg.model_name_or_path, dtype=dtype))
    # the pool scores in the policy's own prompts; when its transmitter is the reference, the fluency reward's
    # log-probs are the reference log-probs of the same tokens, and the trainer reads them instead of recomputing
    memo = LogprobMemo() if shared is not None else None
    pool = ScorerPool(policy=cfg.ref_model_name_or_path or cfg.model_name_or_path, receiver=cfg.receiver_name_or_path,
                      transmitter=pool_model, torch_dtype=dtype, load_context=lambda: frozen_load(accelerator),
                      max_history_tokens=cfg.max_history_tokens, lm_memo=memo, bf16=cfg.bf16)
    reward_fn = build_composite(cfg.reward_funcs, cfg.reward_weights, pool=pool)
    formatter = PromptFormatter(policy.tokenizer, max_history_tokens=cfg.max_history_tokens)
    trainer = PPOTrainer(cfg, policy, ref, reward_fn, accelerator, value_model=value_model,
                         end_token_ids=[formatter.end_token_id], lagged_partner=lagged)
    trainer.ref_memo = memo
    if hasattr(reward_fn, "setup"):
        reward_fn.setup(accelerator)
    with option("--data"):
        env = build_env(cfg, formatter, reward_fn, partner, accelerator)
    return Run(trainer, env, pool, ref, partner)


def _needs_transmitter(spec) -> bool:
    """Whether a reward spec is a built-in that scores with the frozen transmitter (fluency, coherence)."""
    name = spec.get("name") if isinstance(spec, dict) else spec
    return name in ("fluency", "coherence")


CONFIG_TYPES = (PPOConfig,)  # what main parses; the docs build its parser from this


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    (cfg,) = parse_configs(CONFIG_TYPES, argv, prog="p2bot rl", description=__doc__)
    require_inputs(data={"--data": cfg.data},
                   models={"--model_name_or_path": cfg.model_name_or_path,
                           "--ref_model_name_or_path": cfg.ref_model_name_or_path,
                           "--partner_model_name_or_path": cfg.partner_model_name_or_path,
                           "--value_model_name_or_path": cfg.value_model_name_or_path},
                   receivers={"--receiver_name_or_path": cfg.receiver_name_or_path})
    accelerator = build_accelerator(cfg)
    set_seed(cfg.seed, device_specific=True)  # different sampling per process, reproducible per rank
    if accelerator.is_main_process:
        save_resolved_config(cfg.output_dir, cfg)
    run = build_run(cfg, accelerator)
    stats = train(run.trainer, run.env)
    accelerator.print(f"[p2bot rl] done: step {run.trainer.global_step}, "
                      f"scores {stats.get('objective/scores', float('nan')):.4f}, kl {stats.get('objective/kl', float('nan')):.4f}; "
                      f"outputs in {cfg.output_dir}")
    accelerator.end_training()
    return 0
