"""The self-play training loop: rollout → score → update → log/checkpoint, one iteration per step."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from data_prep.files.jsonl_log import JsonlLog
from models.infra.tracking import log_table, tracker_config
from rl.checkpoint import load_checkpoint, recover_checkpoints, resolve_checkpoint, save_checkpoint
from rl.selfplay import SelfPlayEnv
from rl.trainer import PPOTrainer

logger = logging.getLogger(__name__)
SAMPLE_COLUMNS = ("dialogue", "persona_a", "persona_b", "transcript")


class MetricsWriter:
    """``metrics.jsonl`` and ``samples.txt`` (main process only) plus the accelerator's trackers (``report_to``).

    Each checkpoint stores :meth:`offsets`; :meth:`resume_from` cuts both files back to them, so a resumed run
    logs every step exactly once.
    """

    def __init__(self, output_dir: str | os.PathLike, accelerator):
        self.acc = accelerator
        self.metrics = JsonlLog(Path(output_dir) / "metrics.jsonl", accelerator.is_main_process)
        self.samples_log = JsonlLog(Path(output_dir) / "samples.txt", accelerator.is_main_process)

    def log(self, step: int, stats: dict[str, float]) -> None:
        self.metrics.append({"step": step, **stats})
        self.acc.log(stats, step=step)

    def samples(self, step: int, dialogues) -> None:
        text = "\n\n".join(d.render() for d in dialogues)
        self.samples_log.append_text(f"===== step {step} =====\n{text}\n\n")
        rows = [(d.dialogue_id, " ".join(d.persona_a), " ".join(d.persona_b),
                 "\n".join(f"{s}: {t}" for s, t in zip(d.speakers, d.turns))) for d in dialogues]
        log_table(self.acc, "samples/dialogues", SAMPLE_COLUMNS, rows, step)

    def offsets(self) -> dict[str, int]:
        return {"metrics_offset": self.metrics.offset(), "samples_offset": self.samples_log.offset()}

    def resume_from(self, state: dict | None) -> None:
        """Drop what was logged after the checkpoint ``state`` (None: a fresh start, both files emptied)."""
        state = state or {}
        self.metrics.truncate(state.get("metrics_offset", 0))
        self.samples_log.truncate(state.get("samples_offset", 0))


def _start(trainer: PPOTrainer) -> dict | None:
    """Resume from ``config.resume_from_checkpoint`` when given; returns the checkpoint's state (None: step 0)."""
    cfg, acc = trainer.config, trainer.accelerator
    if cfg.resume_from_checkpoint is None:
        return None
    if acc.is_main_process:
        recover_checkpoints(cfg.output_dir)
    acc.wait_for_everyone()
    resume = resolve_checkpoint(cfg.resume_from_checkpoint, cfg.output_dir)
    if resume is None:
        acc.print(f"[p2bot rl] resume_from_checkpoint={cfg.resume_from_checkpoint!r}: no checkpoint in "
                  f"{cfg.output_dir}, starting from step 0")
        return None
    state = load_checkpoint(trainer, resume)
    acc.print(f"[p2bot rl] resumed from {resume} at step {trainer.global_step}")
    return state


def train(trainer: PPOTrainer, env: SelfPlayEnv) -> dict[str, float]:
    """Run self-play PPO from ``trainer.global_step`` (after an optional resume) to ``config.max_steps``.

    Returns the last step's metrics.
    """
    cfg, acc = trainer.config, trainer.accelerator
    state = _start(trainer)
    writer = MetricsWriter(cfg.output_dir, acc)
    writer.resume_from(state)
    config = dataclasses.asdict(cfg)
    if acc.log_with and not acc.trackers:
        init = {"tensorboard": {"purge_step": trainer.global_step}} if state else {}  # drop events logged after it
        acc.init_trackers("p2bot-rl", config=tracker_config(config), init_kwargs=init)
    trainer.policy.card.update(stage="rl", config=config, datasets=[cfg.data or "sample"])
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
        generated = sum(len(r.response_ids) for r in batch.rollouts)  # this process's turns, both speakers
        stats.update({"time/rollout_s": t_rollout, "time/step_s": time.perf_counter() - t0,
                      "selfplay/exchanges": float(cfg.num_exchanges(step)),
                      "selfplay/generated_tokens": float(generated), "time/rollout_tokens_per_s": generated / t_rollout})
        trainer.policy.card.metrics = {k: v for k, v in stats.items() if not k.startswith("time/")}  # last step's
        # --- log / checkpoint ---
        if stats.get("guard/skipped_update"):
            acc.print(f"[p2bot rl] step {step}: update skipped (non-finite rewards/log-probs/values)")
        if cfg.logging_steps and step % cfg.logging_steps == 0:
            writer.log(step, stats)
        if cfg.sample_log_steps and step % cfg.sample_log_steps == 0:
            writer.samples(step, batch.dialogues[: cfg.num_sample_dialogues])
        bar.update(1)
        bar.set_postfix({k.split("/")[-1]: f"{stats[k]:.3g}" for k in ("objective/scores", "objective/kl") if k in stats})
        done = trainer.global_step >= cfg.max_steps
        if done or (cfg.save_steps and trainer.global_step % cfg.save_steps == 0):
            save_checkpoint(trainer, cfg.output_dir, extra=writer.offsets(), save_total_limit=cfg.save_total_limit,
                            prune_keeps_policy=cfg.prune_keeps_policy)
    bar.close()
    return stats
