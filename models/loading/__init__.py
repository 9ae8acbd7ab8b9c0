"""Where a model comes from: ``"embedded"`` (the PyPI-shipped defaults, ``embedded``), a local path or a hub id,
and which device and dtype it loads on (``pretrained``)."""

from models.loading.pretrained import (
    DTYPES,
    EMBEDDED,
    model_identity,
    resolve_device,
    resolve_dtype,
    resolve_model_path,
    same_model,
    with_cpu_processes,
)

__all__ = ["DTYPES", "EMBEDDED", "model_identity", "resolve_device", "resolve_dtype", "resolve_model_path", "same_model",
           "with_cpu_processes"]
