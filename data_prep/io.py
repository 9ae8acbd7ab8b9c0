"""One entry point for every supported format: :func:`read_dialogues`."""

from __future__ import annotations

import os
from pathlib import Path

from data_prep.hf import read_hf
from data_prep.jsonl import read_jsonl
from data_prep.parlai import read_parlai
from data_prep.result import ReadResult
from data_prep.spc import read_spc

FORMATS = ("parlai", "spc", "jsonl", "hf")
_BY_SUFFIX = {".txt": "parlai", ".csv": "spc", ".jsonl": "jsonl", ".json": "jsonl"}


def infer_format(path: str | os.PathLike) -> str:
    """Guess the format from the file name; a folder or a non-existent ``owner/name`` is a ``datasets`` source."""
    p = Path(path)
    if p.is_dir():
        return "hf"
    if p.suffix.lower() in _BY_SUFFIX:
        return _BY_SUFFIX[p.suffix.lower()]
    if not p.exists() and "/" in str(path) and not p.suffix:
        return "hf"
    raise ValueError(f"{path}: cannot infer the data format from the name; pass --format one of {', '.join(FORMATS)}")


def read_dialogues(path: str | os.PathLike, format: str | None = None, strict: bool = False,
                   column_mapping: dict[str, str] | None = None, split: str = "train") -> ReadResult:
    """Read persona dialogues from ``path`` (format inferred unless given).

    Args:
        path: a ParlAI ``.txt``, Synthetic-Persona-Chat ``.csv``, our ``.jsonl``/``.json``, or a ``datasets``
            folder / hub id.
        format: force one of ``parlai``, ``spc``, ``jsonl``, ``hf``.
        strict: make every repair or skip an error instead of a warning.
        column_mapping: for ``hf``: ``{"persona_a": col, "persona_b": col, "turns": col}``.
    """
    fmt = format or infer_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt != "hf" and not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if fmt == "parlai":
        return read_parlai(path, strict)
    if fmt == "spc":
        return read_spc(path, strict)
    if fmt == "jsonl":
        return read_jsonl(path, strict)
    return read_hf(str(path), column_mapping, strict, split=split)
