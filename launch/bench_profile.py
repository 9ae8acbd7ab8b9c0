"""``p2bot bench profile``: where one RL iteration's time and memory go, for any ``p2bot rl`` config.

Builds exactly what ``p2bot rl`` builds from the same options (``--config rl.yaml`` and overrides), then runs
``--profile_steps`` iterations with every phase timed: rollout generation, each reward function, the experience
forwards (policy: old log-probs and values; reference: KL log-probs), the update (forward, backward, optimizer step)
and one checkpoint. Prints a table (seconds, share of the iteration, tokens per second of each model pass, peak
resident memory) and writes ``bench_profile.json`` with the run's provenance to ``--output_dir``.

    p2bot bench profile --config launch/configs/experiments/p2_sample.yaml --profile_steps 2 \\
        --output_dir runs/profile
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.files.atomic import write_text_atomic
from rl.config import PPOConfig


@dataclass
class ProfileConfig:
    profile_steps: int = field(default=1, metadata={"help": "iterations to profile (each one is timed in full)"})
    profile_checkpoint: bool = field(default=True, metadata={"help": "time one checkpoint after the last iteration"})

    def __post_init__(self) -> None:
        if self.profile_steps < 1:
            raise ValueError(f"profile_steps={self.profile_steps}: must be >= 1")


CONFIG_TYPES = (PPOConfig, ProfileConfig)  # what run parses; the docs build its parser from this


def wrap_methods(obj, names: dict[str, str], around) -> None:
    """Replace each method ``name`` of ``obj`` (on the instance) by one that runs inside ``around(label)``, a context
    manager, with ``names = {name: label}``: how the benches time the stages of ``PPOTrainer.step``."""
    def wrapped(label: str, method):
        def call(*args, **kwargs):
            with around(label):
                return method(*args, **kwargs)
        return call

    for name, label in names.items():
        setattr(obj, name, wrapped(label, getattr(obj, name)))


def profile_iterations(run, steps: int, checkpoint_dir: str | None, profiler) -> dict:
    """``steps`` timed iterations of ``run`` (a ``launch.commands.rl.Run``); the profiler's phases."""
    from rl.checkpoint import save_checkpoint

    trainer, env = run.trainer, run.env
    trainer.profiler = profiler
    env.reward_fn.profiler = profiler
    wrap_methods(trainer, {"make_experience": "experience", "update": "update"}, profiler.phase)  # timed whole
    for _ in range(steps):
        step = trainer.global_step
        with profiler.phase("iteration"):
            with profiler.phase("rollout"), trainer.generation_model() as policy:
                batch = env.rollout(policy, step, trainer.config.num_exchanges(step))
            generated = sum(len(r.response_ids) for r in batch.rollouts)
            profiler.phases["rollout"].tokens += generated
            with profiler.phase("score"):
                env.score(batch)
            trainer.step(batch.trainable)
    if checkpoint_dir:
        with profiler.phase("checkpoint"):
            save_checkpoint(trainer, checkpoint_dir, extra={})
    return profiler.as_dict()


def run(argv: list[str] | None = None) -> int:
    from accelerate.utils import set_seed

    from launch.commands.rl import build_run
    from launch.config_io import parse_configs
    from launch.provenance import run_provenance
    from models.infra.profiling import PhaseProfiler
    from rl.trainer import build_accelerator

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg, prof = parse_configs(CONFIG_TYPES, argv, prog="p2bot bench profile", description=__doc__)
    cfg.max_steps = max(cfg.max_steps, prof.profile_steps)
    accelerator = build_accelerator(cfg)
    set_seed(cfg.seed, device_specific=True)
    started = time.perf_counter()
    profiler = PhaseProfiler()
    with profiler.phase("build"):
        built = build_run(cfg, accelerator)
    try:
        phases = profile_iterations(built, prof.profile_steps,
                                    str(Path(cfg.output_dir) / "checkpoints") if prof.profile_checkpoint else None,
                                    profiler)
    finally:
        profiler.close()
    table = profiler.table(total="iteration")
    result = {"steps": prof.profile_steps, "phases": phases, "table": table,
              "iteration_s": phases["iteration"]["seconds"] / prof.profile_steps,
              "dialogues_per_step": cfg.pairs_per_step * cfg.rollouts_per_pair,
              "provenance": run_provenance("p2bot bench profile", argv, (cfg, prof))}
    result["wall_s"] = time.perf_counter() - started
    if accelerator.is_main_process:
        print(table)
        print(f"\n{result['iteration_s']:.2f} s per iteration ({result['dialogues_per_step']} dialogues per step; shares "
              "are of the iteration; peak RSS is the process's)")
        path = write_text_atomic(Path(cfg.output_dir) / "bench_profile.json", json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0
