"""Where a result came from: the command line, resolved config, commit, machine, date and wall time of a run.

Every command that writes a result file (``eval``, ``eval --selfplay``, ``bench ...``, ``recipe``) stores
``run_provenance(...)`` under the key ``provenance``, so a table rendered from that file (``p2bot docs results``)
can say exactly what produced it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: str | os.PathLike = SOURCE_ROOT) -> str:
    """The commit of the source tree the code runs from (``<sha>``, ``<sha>-dirty`` with uncommitted changes to
    tracked files), or ``p2bot <version>`` for an installed package outside a git checkout."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"p2bot {version('p2bot')}"
        except PackageNotFoundError:
            return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_details() -> dict[str, Any]:
    """The machine a run used: CPU, logical CPUs, RAM, GPUs, and the versions of the libraries that set its speed."""
    import psutil
    import torch
    import transformers
    import trl

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "cpu": _cpu_name(),
        "logical_cpus": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "platform": platform.platform(),
    }


def describe_machine(details: dict[str, Any]) -> str:
    """One line: ``"AMD EPYC 9R14, 2 logical CPUs, 23.4 GiB RAM, no GPU"``."""
    gpus = ", ".join(details.get("gpus") or []) or "no GPU"
    return f"{details.get('cpu')}, {details.get('logical_cpus')} logical CPUs, {details.get('ram_gib')} GiB RAM, {gpus}"


def _config_dict(config: Any) -> Any:
    if config is None or isinstance(config, dict):
        return config
    from launch.config_io import config_to_dict

    configs = config if isinstance(config, (tuple, list)) else (config,)
    return config_to_dict(*[c for c in configs if dataclasses.is_dataclass(c)])


def run_provenance(prog: str, argv: list[str] | None, config: Any = None, started: float | None = None) -> dict:
    """The provenance record of this run of ``prog`` (e.g. ``"p2bot bench eval"``) with options ``argv``.

    ``config``: the resolved config (a dataclass, several, or a mapping). ``started``: the run's start as
    ``time.time()`` (default: when this process started, which for a ``p2bot`` command is when the command did).
    """
    import psutil

    start = started if started is not None else psutil.Process().create_time()
    details = machine_details()
    return {
        "command": shlex.join([*prog.split(), *(argv or [])]),
        "config": _config_dict(config),
        "commit": git_commit(),
        "machine": describe_machine(details),
        "machine_details": details,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.time() - start, 1),
        "origin": "run",
    }
