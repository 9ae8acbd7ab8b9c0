"""The ``Accelerator`` a trainer runs under, what the trainer asks of it (DeepSpeed or not, the ZeRO stage), and
the agreements between processes that its step needs (a flag on every rank, metrics averaged over ranks)."""

from __future__ import annotations

import math
import os
from collections import defaultdict

import torch
from accelerate import Accelerator

from models.infra.tracking import resolve_report_to
from rl.config import PPOConfig
from rl.experience import Rollout


def build_accelerator(config: PPOConfig, **kwargs) -> Accelerator:
    """An ``Accelerator`` for ``config``, logging to its ``report_to`` trackers (files under ``output_dir``); a
    multi-process run without CUDA uses gloo (``models.loading.pretrained.with_cpu_processes``)."""
    from accelerate.utils import ProjectConfiguration

    from models.loading.pretrained import with_cpu_processes

    trackers = resolve_report_to(config.report_to)
    kwargs.setdefault("log_with", trackers or None)
    kwargs.setdefault("project_config", ProjectConfiguration(project_dir=config.output_dir,
                                                             logging_dir=os.path.join(config.output_dir, "tracking")))
    return Accelerator(**with_cpu_processes(dict(kwargs, gradient_accumulation_steps=config.gradient_accumulation_steps)))


def is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.state.deepspeed_plugin is not None


def zero_stage(accelerator: Accelerator) -> int:
    plugin = accelerator.state.deepspeed_plugin
    return int(plugin.zero_stage) if plugin is not None else 0


def check_accumulation(accelerator: Accelerator, config: PPOConfig) -> None:
    """The accelerator accumulates over as many micro-batches as ``config`` asks for."""
    if accelerator.gradient_accumulation_steps != config.gradient_accumulation_steps:
        raise ValueError(
            f"accelerator.gradient_accumulation_steps={accelerator.gradient_accumulation_steps} differs from "
            f"config.gradient_accumulation_steps={config.gradient_accumulation_steps} (under DeepSpeed, set "
            "deepspeed_config.gradient_accumulation_steps in the accelerate config to the same value)"
        )


def configure_deepspeed(accelerator: Accelerator, config: PPOConfig) -> None:
    """No dataloader goes through ``prepare``, so DeepSpeed needs its micro-batch size spelled out."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        ds["train_micro_batch_size_per_gpu"] = 1  # only used by DeepSpeed's throughput bookkeeping here
    if ds.get("gradient_accumulation_steps", "auto") == "auto":
        ds["gradient_accumulation_steps"] = config.gradient_accumulation_steps
    elif int(ds["gradient_accumulation_steps"]) != config.gradient_accumulation_steps:
        raise ValueError(f"DeepSpeed config gradient_accumulation_steps={ds['gradient_accumulation_steps']} differs from "
                         f"gradient_accumulation_steps={config.gradient_accumulation_steps}")
    if ds.get("gradient_clipping", "auto") == "auto":
        ds["gradient_clipping"] = config.max_grad_norm


def all_ranks(accelerator: Accelerator, flag: bool) -> bool:
    """True when ``flag`` holds on every process."""
    t = torch.tensor([0.0 if flag else 1.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() == 0)


def mean_over_processes(accelerator: Accelerator, stats: dict[str, float]) -> dict[str, float]:
    """Every metric averaged over processes (all processes hold the same keys)."""
    if accelerator.num_processes == 1:
        return stats
    keys = sorted(stats)
    t = torch.tensor([stats[k] for k in keys], device=accelerator.device, dtype=torch.float64)
    t = accelerator.reduce(t, reduction="mean")
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def reward_components(accelerator: Accelerator, rollouts: list[Rollout]) -> dict[str, float]:
    """``reward/<name>``: each component's mean over every process's rollouts. The names are agreed across
    processes first, so a component that no rollout of one process has still gets one key everywhere."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rollouts:
        for k, v in r.components.items():
            if v is not None and math.isfinite(v):
                sums[k][0] += float(v)
                sums[k][1] += 1.0
    names = sorted(sums)
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        names = sorted(set().union(*gather_object([names])))
        t = torch.tensor([sums[n][i] if n in sums else 0.0 for n in names for i in (0, 1)],
                         device=accelerator.device, dtype=torch.float64)
        t = accelerator.reduce(t, reduction="sum").tolist()
        sums = {n: [t[2 * j], t[2 * j + 1]] for j, n in enumerate(names)}
    return {f"reward/{n}": sums[n][0] / sums[n][1] if sums[n][1] else float("nan") for n in names}
