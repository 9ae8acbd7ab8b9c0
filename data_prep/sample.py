"""The small self-written sample set shipped with the package (the demo's default data)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_FILE = "sample_dialogues.jsonl"


def sample_data_path() -> Path:
    return Path(__file__).resolve().parent / "sample_data" / SAMPLE_FILE
