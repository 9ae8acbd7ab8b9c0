"""Atomic checkpoints of a ``PPOTrainer``: everything needed to resume exactly, plus the trained policy.

Layout of ``<output_dir>/checkpoint-<step>/``:
    state/                 ``accelerator.save_state``: model weights (safetensors; DeepSpeed: its own shards),
                           optimizer, scheduler, python/numpy/torch RNG of every process
    policy/                ``Transmitter.save_pretrained`` (safetensors; LoRA adapters with PEFT; ZeRO-3: gathered)
    trainer_state.json     step, KL-controller state, anything the caller adds
Every process writes into ``.tmp-checkpoint-<step>``, then the main process renames it (``os.replace``), so a
crash never leaves a half-written ``checkpoint-<step>``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from rl.trainer import PPOTrainer

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"


def save_checkpoint(trainer: PPOTrainer, output_dir: str | os.PathLike, extra: dict | None = None,
                    save_total_limit: int = 0) -> Path:
    """Write ``checkpoint-<global_step>`` atomically (collective: every process must call it); returns its path."""
    acc = trainer.accelerator
    out = Path(output_dir)
    final = out / f"{PREFIX}{trainer.global_step}"
    tmp = out / f".tmp-{PREFIX}{trainer.global_step}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp / "state"), safe_serialization=True)
    with trainer.generation_model() as policy:  # under ZeRO-3 this gathers the full weights on every process
        if acc.is_main_process:
            policy.save_pretrained(tmp / "policy")
    if acc.is_main_process:
        state = {**trainer.state_dict(), **(extra or {})}
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True))
        if final.exists():  # re-saving the same step: swap, then drop the old copy
            old = out / f".old-{PREFIX}{trainer.global_step}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if save_total_limit > 0:
            for stale in list_checkpoints(out)[:-save_total_limit]:
                shutil.rmtree(stale, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def load_checkpoint(trainer: PPOTrainer, path: str | os.PathLike) -> dict:
    """Restore model, optimizer, scheduler, RNG states, step and KL controller from ``path``; returns its state."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a p2bot RL checkpoint (no {STATE_FILE})")
    trainer.accelerator.load_state(str(path / "state"))
    state = json.loads((path / STATE_FILE).read_text())
    trainer.load_state_dict(state)
    return state


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Finished checkpoints in ``output_dir``, oldest first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := re.fullmatch(rf"{PREFIX}(\d+)", p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(spec: str | None, output_dir: str | os.PathLike) -> Path | None:
    """``'latest'`` → newest checkpoint in ``output_dir`` (None if there is none); a path → that path."""
    if spec is None:
        return None
    if spec == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint={spec!r}: no such directory")
    return path
