"""LoRA from a training config's ``use_peft`` / ``lora_*`` fields (``p2bot sft``, ``p2bot rl``, ``p2bot rl-trl``)."""

from __future__ import annotations


def check_lora(cfg) -> None:
    """A clear error for LoRA settings that would train nothing."""
    if cfg.use_peft and (cfg.lora_r < 1 or not cfg.lora_target_modules):
        raise ValueError("use_peft needs lora_r >= 1 and at least one lora_target_modules entry")


def lora_config(cfg):
    """The PEFT ``LoraConfig`` of ``cfg``, or None without ``use_peft``."""
    if not cfg.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")
