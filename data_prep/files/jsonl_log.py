"""Append-only JSONL logs (``metrics.jsonl``, the Receiver's ``log.jsonl``) that survive kills and resumes.

A process killed mid-write leaves a torn last line: :func:`read_jsonl` drops it (a bad line anywhere else is an
error naming the file and line). Each checkpoint records the log's :meth:`JsonlLog.offset`; a resume calls
:meth:`JsonlLog.truncate` with it, so the steps logged after that checkpoint are logged once more, not twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from data_prep.files.atomic import fsync_path


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The objects of a JSONL file; a torn (unterminated, unparsable) last line is dropped."""
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:  # no newline after it: the write was cut short
                break
            raise ValueError(f"{path}:line {i + 1}: not valid JSON ({err.msg})") from None
    return rows


def complete_length(data: bytes) -> int:
    """Bytes of ``data`` up to and including its last newline (what a torn write leaves intact)."""
    return data.rfind(b"\n") + 1


class JsonlLog:
    """One JSON object per line (or raw text lines), appended at once; inactive (writes nothing) when ``enabled`` is False.

    Args:
        path: the file.
        enabled: False on every process but the main one.
    """

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled

    def append(self, row: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            f.write((json.dumps(row, sort_keys=True) + "\n").encode("utf-8"))

    def append_text(self, text: str) -> None:
        """Append raw text (end it with a newline: :meth:`truncate` keeps whole lines only)."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            f.write(text.encode("utf-8"))

    def offset(self) -> int:
        """Bytes of complete lines written so far, flushed to disk (store it in a checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return 0
        fsync_path(self.path)
        return complete_length(self.path.read_bytes())

    def truncate(self, offset: int | None = None) -> None:
        """Keep the first ``offset`` bytes (None: every complete line); drops a torn last line either way."""
        if not self.enabled or not self.path.is_file():
            return
        with self.path.open("r+b") as f:
            data = f.read()
            keep = complete_length(data if offset is None else data[:offset])
            if keep != len(data):
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
