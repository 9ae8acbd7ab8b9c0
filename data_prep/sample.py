"""The small self-written sample set shipped with the package (the demo's default data)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_FILE = "sample_dialogues.jsonl"


def sample_data_path() -> Path:
    return Path(__file__).resolve().parent / "sample_data" / SAMPLE_FILE


def resolve_data_path(path: str | Path | None) -> Path:
    """``None``, ``""`` or ``"sample"`` mean the shipped sample set; anything else is taken as given."""
    return sample_data_path() if path in (None, "", "sample") else Path(path)
