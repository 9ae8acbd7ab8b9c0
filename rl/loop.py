"""The self-play training loop: rollout → score → update → log/checkpoint, one iteration per step."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from rl.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from rl.selfplay import SelfPlayEnv
from rl.trainer import PPOTrainer

logger = logging.getLogger(__name__)


class MetricsWriter:
    """Appends one JSON object per logged step to ``metrics.jsonl`` (main process only) and to tensorboard."""

    def __init__(self, output_dir: str | os.PathLike, enabled: bool, report_to: list[str] = ()):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.samples_path = Path(output_dir) / "samples.txt"
        self.enabled = enabled
        self.tb = None
        if enabled and "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def log(self, step: int, stats: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **stats}, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in stats.items():
                self.tb.add_scalar(k, v, step)

    def samples(self, step: int, text: str) -> None:
        if self.enabled:
            with self.samples_path.open("a") as f:
                f.write(f"===== step {step} =====\n{text}\n\n")


def train(trainer: PPOTrainer, env: SelfPlayEnv) -> dict[str, float]:
    """Run self-play PPO from ``trainer.global_step`` (after an optional resume) to ``config.max_steps``.

    Returns the last step's metrics.
    """
    cfg, acc = trainer.config, trainer.accelerator
    resume = resolve_checkpoint(cfg.resume_from_checkpoint, cfg.output_dir)
    if resume is not None:
        load_checkpoint(trainer, resume)
        acc.print(f"[p2bot rl] resumed from {resume} at step {trainer.global_step}")
    writer = MetricsWriter(cfg.output_dir, acc.is_main_process, cfg.report_to)
    bar = tqdm(total=cfg.max_steps, initial=trainer.global_step, disable=cfg.disable_tqdm or not acc.is_main_process,
               desc="rl", dynamic_ncols=True)
    stats: dict[str, float] = {}
    while trainer.global_step < cfg.max_steps:
        step, t0 = trainer.global_step, time.perf_counter()
        # --- rollout ---
        with trainer.generation_model() as policy:
            batch = env.rollout(policy, step, cfg.num_exchanges(step))
        t_rollout = time.perf_counter() - t0
        # --- score ---
        env.score(batch)
        # --- update ---
        stats = trainer.step(batch.trainable)
        stats.update({"time/rollout_s": t_rollout, "time/step_s": time.perf_counter() - t0,
                      "selfplay/exchanges": float(cfg.num_exchanges(step))})
        # --- log / checkpoint ---
        if stats.get("guard/skipped_update"):
            acc.print(f"[p2bot rl] step {step}: update skipped (non-finite rewards/log-probs/values)")
        if cfg.logging_steps and step % cfg.logging_steps == 0:
            writer.log(step, stats)
        if cfg.sample_log_steps and step % cfg.sample_log_steps == 0:
            writer.samples(step, "\n\n".join(d.render() for d in batch.dialogues[: cfg.num_sample_dialogues]))
        bar.update(1)
        bar.set_postfix({k.split("/")[-1]: f"{stats[k]:.3g}" for k in ("objective/scores", "objective/kl") if k in stats})
        done = trainer.global_step >= cfg.max_steps
        if done or (cfg.save_steps and trainer.global_step % cfg.save_steps == 0):
            save_checkpoint(trainer, cfg.output_dir, save_total_limit=cfg.save_total_limit)
    bar.close()
    return stats
