"""Atomic checkpoints of a ``PPOTrainer``: everything needed to resume exactly, plus the trained policy.

Layout of ``<output_dir>/checkpoint-<step>/``:
    state/                 ``accelerator.save_state``: model weights (safetensors; DeepSpeed: its own shards) and
                           optimizer (``optimizer.bin``, read back with ``weights_only=True``); ``scheduler.json`` and
                           ``rng_state_<rank>.safetensors`` (python/numpy/torch RNG of every process), no pickle
    policy/                ``Transmitter.save_pretrained`` (safetensors; LoRA adapters with PEFT; ZeRO-3: gathered);
                           its meta records the reward models it trained against (``record_reward_models``)
    critic/                the separate value model, when there is one (its weights are also in state/)
    lagged_partner.safetensors   the lagged partner's synced weights (``partner: lagged``)
    trainer_state.json     step, KL-controller state, log offsets, anything the caller adds
Every process writes into ``.tmp-checkpoint-<step>``; the main process fsyncs it and renames it into place
(``data_prep.files.atomic.replace_dir``), so a crash at any moment leaves every ``checkpoint-<step>`` complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from data_prep.files.atomic import fsync_path, recover_dir, replace_dir, write_text_atomic
from models.infra.train_state import load_rng_state, load_scheduler, save_rng_state, save_scheduler
from rl.trainer import PPOTrainer

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"


def record_reward_models(policy, reward_fn) -> None:
    """Add the models ``reward_fn``'s ``ScorerPool`` scored with (``ScorerPool.reward_models``) to the reward models
    ``policy`` records, which its ``save_pretrained`` writes; a model an earlier RL run recorded stays listed."""
    pool = getattr(reward_fn, "pool", None)
    used = pool.reward_models() if pool is not None else {}
    record = {role: list(models) for role, models in policy.reward_models.items()}
    for role, identity in used.items():
        if identity not in record.setdefault(role, []):
            record[role].append(identity)
    policy.reward_models = record


def save_checkpoint(trainer: PPOTrainer, output_dir: str | os.PathLike, extra: dict | None = None,
                    save_total_limit: int = 0, prune_keeps_policy: bool = False) -> Path:
    """Write ``checkpoint-<global_step>`` atomically (collective: every process must call it); returns its path.

    With ``save_total_limit`` only the newest that many checkpoints stay whole; an older one is removed, or with
    ``prune_keeps_policy`` reduced to its ``policy/`` (a candidate for ``p2bot select``, no longer resumable).
    """
    acc = trainer.accelerator
    out = Path(output_dir)
    final = out / f"{PREFIX}{trainer.global_step}"
    tmp = out / f".tmp-{PREFIX}{trainer.global_step}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp / "state"), safe_serialization=True)
    save_rng_state(tmp / "state", acc.process_index)
    with trainer.generation_model() as policy:  # under ZeRO-3 this gathers the full weights on every process
        if acc.is_main_process:
            record_reward_models(policy, trainer.reward_fn)
            policy.save_pretrained(tmp / "policy", atomic=False)
            if hasattr(policy, "save_critic"):  # a separate value model: loadable on its own as well
                policy.save_critic(tmp / "critic", atomic=False)
            trainer.save_extra_state(tmp)  # e.g. the lagged partner's weights
    acc.wait_for_everyone()
    if acc.is_main_process:
        save_scheduler(trainer.scheduler, tmp / "state")
        state = {**trainer.state_dict(), **(extra or {})}
        write_text_atomic(tmp / STATE_FILE, json.dumps(state, indent=2, sort_keys=True))
        replace_dir(tmp, final)  # fsyncs the tree first; an existing same-step checkpoint is swapped out
        if save_total_limit > 0:
            for stale in list_checkpoints(out)[:-save_total_limit]:
                prune(stale, keep_policy=prune_keeps_policy)
            fsync_path(out)
    acc.wait_for_everyone()
    return final


def prune(checkpoint: Path, keep_policy: bool = False) -> None:
    """Remove a stale checkpoint, or everything in it but ``policy/`` (its state file first: never half-resumable)."""
    if not keep_policy or not (checkpoint / "policy").is_dir():
        shutil.rmtree(checkpoint, ignore_errors=True)
        return
    (checkpoint / STATE_FILE).unlink(missing_ok=True)
    for item in checkpoint.iterdir():
        if item.name != "policy":
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)


def load_checkpoint(trainer: PPOTrainer, path: str | os.PathLike) -> dict:
    """Restore model, optimizer, scheduler, RNG states, step and KL controller from ``path``; returns its state."""
    path = Path(path)
    if not (path / STATE_FILE).is_file() and (path / "policy").is_dir():
        raise FileNotFoundError(f"{path}: only its policy/ was kept (save_total_limit with prune_keeps_policy); "
                                "resume from a newer checkpoint, or start a new run from this policy/")
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a p2bot RL checkpoint (no {STATE_FILE})")
    if (path / "state" / "custom_checkpoint_0.pkl").is_file():
        raise ValueError(f"{path}: written by an older p2bot that pickled the scheduler; it cannot be resumed "
                         "without unpickling (start a new run from its policy/ instead)")
    acc = trainer.accelerator
    acc.load_state(str(path / "state"), load_kwargs={"weights_only": True})
    load_scheduler(trainer.scheduler, path / "state")
    load_rng_state(path / "state", acc.process_index)
    trainer.load_extra_state(path)
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


def recover_checkpoints(output_dir: str | os.PathLike) -> None:
    """Main process, before a resume: put back a checkpoint a crash left aside, drop unfinished temp directories."""
    out = Path(output_dir)
    if not out.is_dir():
        return
    for p in list(out.iterdir()):
        if m := re.fullmatch(rf"\.({PREFIX}\d+)\.old", p.name):
            recover_dir(out / m.group(1))
    for p in out.glob(f".tmp-{PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


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
