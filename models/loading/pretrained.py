"""Where a model comes from: the string ``"embedded"``, a local directory, or a hub id."""

from __future__ import annotations

import os
from pathlib import Path

from models.loading.embedded import embedded_policy_path, embedded_receiver_path

EMBEDDED = "embedded"
_EMBEDDED_RESOLVERS = {"policy": embedded_policy_path, "receiver": embedded_receiver_path}


def resolve_model_path(name_or_path: str | Path = EMBEDDED, kind: str = "policy") -> str:
    """Turn a model argument into something ``from_pretrained`` accepts.

    Args:
        name_or_path: ``"embedded"`` (the default shipped with p2bot), a local directory or a hub id.
        kind: ``"policy"`` (causal LM) or ``"receiver"`` (sentence encoder); picks the embedded default.

    Returns:
        A local directory (as a string) or the hub id unchanged. A string that looks like a path
        (``./x``, ``/x``, ``~/x``) but does not exist raises ``FileNotFoundError`` rather than going to the hub.
    """
    if kind not in _EMBEDDED_RESOLVERS:
        raise ValueError(f"kind must be one of {sorted(_EMBEDDED_RESOLVERS)}, got {kind!r}")
    name = str(name_or_path)
    if name == EMBEDDED:
        return str(_EMBEDDED_RESOLVERS[kind]())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"{name}: a model must be a directory (config + weights), not a file")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise FileNotFoundError(f"{name}: no such model directory")
    return name


def model_identity(name_or_path: str | Path, kind: str = "policy") -> dict[str, str]:
    """``{"name", "path"}``: a model argument as given and where it resolves (a local directory's real path, else the
    hub id). What a training record stores of a model, and what a judge is compared with (``same_model``)."""
    path = resolve_model_path(name_or_path, kind)
    return {"name": str(name_or_path), "path": os.path.realpath(path) if os.path.isdir(path) else path}


def same_model(a: dict[str, str], b: dict[str, str]) -> bool:
    """Two ``model_identity`` records of one kind name the same model: the same name or the same resolved path."""
    return a["name"] == b["name"] or a["path"] == b["path"]


def resolve_device(device: str | None = "auto") -> str:
    """``"auto"`` (or None) → ``"cuda"`` when a GPU is visible, else ``"cpu"``; anything else unchanged."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


DTYPES = ("float32", "bfloat16", "float16")


def resolve_dtype(name: str | None):
    """``None``/``"auto"`` → None (the checkpoint's own dtype); ``"float32"``, ``"bfloat16"``, ``"float16"`` → torch dtype."""
    if name in (None, "", "auto"):
        return None
    if name not in DTYPES:
        raise ValueError(f"torch_dtype={name!r}: expected one of {DTYPES} or auto")
    import torch

    return getattr(torch, name)


def with_cpu_processes(kwargs: dict) -> dict:
    """``Accelerator`` kwargs, completed for several launched processes (``WORLD_SIZE`` > 1) without CUDA.

    accelerate only forms a gloo DDP group (``MULTI_CPU``) when told ``cpu=True``; without it every process of
    a torchrun launch believes it is alone and trains on its own. DeepSpeed must not get ``cpu=True`` (that drops
    DeepSpeed): it gets the gloo backend named instead. Unchanged with CUDA or a single process."""
    import torch

    kwargs = dict(kwargs)
    if torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return kwargs
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        from accelerate.utils import InitProcessGroupKwargs

        kwargs["kwargs_handlers"] = [*kwargs.get("kwargs_handlers", []), InitProcessGroupKwargs(backend="gloo")]
    else:
        kwargs["cpu"] = True
    return kwargs
