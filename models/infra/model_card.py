"""Model cards (``README.md``) written beside every saved Transmitter and Receiver.

A card says what the model is (base model, heads), what it was trained on, with which resolved config, and how
well it did; its YAML header (``huggingface_hub.ModelCardData``) carries ``base_model`` and ``datasets`` where they
are hub ids, so the Hub links them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CARD_FILE = "README.md"
# the embedded defaults, by the hub ids they were published under
EMBEDDED_IDS = {"policy": "HuggingFaceTB/SmolLM2-135M-Instruct", "receiver": "sentence-transformers/all-MiniLM-L6-v2"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FILE_SUFFIXES = {".csv", ".json", ".jsonl", ".txt", ".tsv", ".parquet"}  # "data/train.csv" is a file, not a repo


@dataclass
class CardInfo:
    """What a card reports; training code fills it in before saving.

    Args:
        base_model: the model training started from (``"embedded"``, a hub id or a path).
        datasets: the data it was trained on (files or hub ids).
        config: the resolved training config.
        metrics: name → value (evaluation results, last training statistics).
        stage: what produced the weights (``sft``, ``rl``, ``receiver``).
    """

    base_model: str = ""
    datasets: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    stage: str = ""

    def update(self, **values: Any) -> CardInfo:
        for key, value in values.items():
            if not hasattr(self, key):
                raise TypeError(f"CardInfo has no field {key!r}")
            setattr(self, key, value)
        return self


def hub_id(name: str, kind: str = "policy") -> str | None:
    """``name`` as a hub id (``"embedded"`` → the default's id), or None for a local path."""
    if name == "embedded":
        return EMBEDDED_IDS[kind]
    if not name or os.path.exists(os.path.expanduser(name)) or not _HUB_ID.match(name):
        return None
    return None if Path(name).suffix.lower() in _FILE_SUFFIXES else name


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_card(info: CardInfo, *, kind: str, summary: str, files: list[str]) -> str:
    """The card's Markdown, YAML header first. ``kind``: ``policy`` (Transmitter) or ``receiver``."""
    from huggingface_hub import ModelCardData

    base_id = hub_id(info.base_model, kind)
    data_ids = [d for d in (hub_id(x) for x in info.datasets) if d]
    header = ModelCardData(base_model=base_id, datasets=data_ids or None, library_name="transformers",
                           tags=["p2bot", "persona-dialogue", *([info.stage] if info.stage else [])],
                           pipeline_tag="text-generation" if kind == "policy" else "sentence-similarity")
    cls = "Transmitter" if kind == "policy" else "Receiver"
    lines = [f"---\n{header.to_yaml()}\n---", f"# p2bot {cls}", "", summary, "",
             f"- **Base model:** `{info.base_model or 'unknown'}`" + (f" ({base_id})" if base_id and base_id != info.base_model else ""),
             f"- **Training data:** {', '.join(f'`{d}`' for d in info.datasets) or 'not recorded'}",
             f"- **Stage:** {info.stage or 'not trained by p2bot'}", ""]
    if info.metrics:
        lines += ["## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(info.metrics.items())] + [""]
    lines += ["## Use", "", "```python", f"from models.{'transmitter' if kind == 'policy' else 'receiver'} import {cls}",
              "", f'model = {cls}.from_pretrained("<this repo or folder>")', "```", "",
              "## Files", "", *[f"- `{f}`" for f in files], ""]
    if info.config:
        config = json.loads(json.dumps(info.config, default=str))  # plain types only
        lines += ["## Training config (resolved)", "", "```yaml",
                  yaml.safe_dump(config, sort_keys=True, default_flow_style=False).rstrip(), "```", ""]
    return "\n".join(lines)


def write_card(directory: str | os.PathLike, info: CardInfo, *, kind: str, summary: str) -> Path:
    """Render the card for the files now in ``directory`` and write it as ``README.md``."""
    directory = Path(directory)
    files = sorted(p.name for p in directory.iterdir() if p.name != CARD_FILE)
    path = directory / CARD_FILE
    path.write_text(render_card(info, kind=kind, summary=summary, files=files), encoding="utf-8")
    return path
