"""Experiment trackers through accelerate (``report_to``), shared by the RL loop and the Receiver trainer.

accelerate silently drops a tracker whose package is missing; :func:`resolve_report_to` makes that, and any name it
does not know, an error naming the field. :func:`log_table` logs rows (sample dialogues) as a table where the
tracker has one (wandb, trackio, mlflow) and as a Markdown text table on tensorboard.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

# tracker name → the package it needs
TRACKERS: dict[str, str] = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow",
                            "comet_ml": "comet_ml", "aim": "aim", "clearml": "clearml", "dvclive": "dvclive",
                            "swanlab": "swanlab"}


def _installed(name: str) -> bool:
    return importlib.util.find_spec(TRACKERS[name]) is not None


def resolve_report_to(value: str | Sequence[str] | None, field: str = "report_to") -> list[str]:
    """Tracker names from ``"none"``, ``"all"``, ``"tensorboard,wandb"`` or a list of names.

    ``all`` means every tracker that is installed. Raises ``ValueError`` naming ``field`` for an unknown name or a
    tracker whose package is not installed.
    """
    raw = [value] if isinstance(value, str) or value is None else list(value)
    names = [n.strip() for item in raw if item for n in str(item).split(",") if n.strip()]
    if names in ([], ["none"]):
        return []
    allowed = ", ".join(["none", "all", *TRACKERS])
    for name in names:
        if name not in TRACKERS and name not in ("all", "none"):
            raise ValueError(f"{field}={value!r}: unknown tracker {name!r} (expected {allowed})")
    if "none" in names:
        raise ValueError(f"{field}={value!r}: 'none' cannot be combined with trackers")
    if "all" in names:
        return [n for n in TRACKERS if _installed(n)]
    for name in names:
        if not _installed(name):
            raise ValueError(f"{field}={value!r}: tracker {name!r} needs the {TRACKERS[name]!r} package, which is not "
                             f"installed (pip install {TRACKERS[name]})")
    return list(dict.fromkeys(names))


def tracker_config(config: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """A flat config every tracker accepts: scalars as they are, anything else (lists, None) as a string."""
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in config.items()}


def markdown_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """``rows`` as a Markdown table; newlines inside a cell become ``<br>`` and pipes are escaped."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", "<br>")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def log_table(accelerator, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
    """Log ``rows`` under ``name`` to every tracker of ``accelerator`` (main process only)."""
    if not accelerator.is_main_process:
        return
    columns, rows = list(columns), [list(r) for r in rows]
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_text(name, markdown_rows(columns, rows), global_step=step)
            tracker.writer.flush()
        elif tracker.name == "trackio":
            import trackio

            tracker.log({name: trackio.Table(columns=columns, data=rows)}, step=step)
        elif tracker.name == "mlflow":
            import mlflow

            mlflow.log_table({c: [r[i] for r in rows] for i, c in enumerate(columns)},
                             artifact_file=f"{name}/step_{step:07d}.json")
        elif hasattr(tracker, "log_table"):  # wandb, clearml
            tracker.log_table(name, columns=columns, data=rows, step=step)
        else:  # a tracker without tables gets the Markdown text
            tracker.log({name: markdown_rows(columns, rows)}, step=step)
