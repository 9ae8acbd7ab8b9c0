"""Trainer state without pickle: the LR scheduler as JSON, the RNG states of a process as one safetensors file.

accelerate pickles registered objects such as a scheduler (``custom_checkpoint_0.pkl``, loaded with
``weights_only=False``) and restores RNG states inside a ``try`` that swallows every error. p2bot's trainers
keep the scheduler out of accelerate and write both here instead; a missing or unreadable file is an error that
names it, so a resume can never continue with fresh random streams.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from data_prep.files.atomic import write_text_atomic

SCHEDULER_FILE = "scheduler.json"
RNG_FILE = "rng_state_{rank}.safetensors"


def save_scheduler(scheduler, directory: str | os.PathLike) -> Path:
    """``scheduler.state_dict()`` as ``directory/scheduler.json``."""
    state = scheduler.state_dict()
    try:
        text = json.dumps(state, indent=1, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"{type(scheduler).__name__} state is not JSON-serialisable ({err})") from None
    return write_text_atomic(Path(directory) / SCHEDULER_FILE, text)


def load_scheduler(scheduler, directory: str | os.PathLike) -> None:
    path = Path(directory) / SCHEDULER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (the checkpoint holds no scheduler state)")
    scheduler.load_state_dict(json.loads(path.read_text()))


def save_rng_state(directory: str | os.PathLike, rank: int) -> Path:
    """Python, NumPy, torch CPU and CUDA generator states of this process as ``rng_state_<rank>.safetensors``.

    Tensors (torch states, the NumPy key) are stored as tensors; the Python state and the NumPy scalars go in
    the safetensors metadata as JSON.
    """
    version, py_state, gauss = random.getstate()
    kind, np_key, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy_key": torch.from_numpy(np_key.astype(np.int64))}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    meta = {"python": json.dumps([version, list(py_state), gauss]),
            "numpy": json.dumps([kind, int(np_pos), int(np_has_gauss), float(np_gauss)])}
    path = Path(directory) / RNG_FILE.format(rank=rank)
    save_file(tensors, str(path), metadata=meta)
    return path


def load_rng_state(directory: str | os.PathLike, rank: int) -> None:
    """Restore what :func:`save_rng_state` wrote for ``rank``."""
    path = Path(directory) / RNG_FILE.format(rank=rank)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (the checkpoint holds no RNG state for process {rank})")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    version, py_state, gauss = json.loads(meta["python"])
    random.setstate((version, tuple(py_state), gauss))
    kind, pos, has_gauss, cached = json.loads(meta["numpy"])
    np.random.set_state((kind, tensors["numpy_key"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
