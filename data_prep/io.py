"""One entry point for every supported format: :func:`read_dialogues`."""

from __future__ import annotations

import os
from pathlib import Path

from data_prep.hf import load_hf, read_hf, split_revision
from data_prep.jsonl import read_jsonl
from data_prep.parlai import read_parlai
from data_prep.personachat_hub import LAYOUT_COLUMNS, detect_layout, read_personachat
from data_prep.result import ReadResult
from data_prep.spc import read_spc

FORMATS = ("parlai", "spc", "jsonl", "hf", *LAYOUT_COLUMNS)
DATASET_FORMATS = ("hf", *LAYOUT_COLUMNS)  # read through ``datasets``: a hub id, a save_to_disk folder, a Dataset
_BY_SUFFIX = {".txt": "parlai", ".csv": "spc", ".jsonl": "jsonl", ".json": "jsonl"}


def infer_format(path: str | os.PathLike) -> str:
    """Guess the format from the file name; a folder or a non-existent ``owner/name[@revision]`` is a ``datasets``
    source (whose layout ``read_dataset`` then recognises by its columns)."""
    p = Path(path)
    if p.is_dir():
        return "hf"
    if p.suffix.lower() in _BY_SUFFIX:
        return _BY_SUFFIX[p.suffix.lower()]
    hub_id = Path(split_revision(str(path))[0])  # owner/name or owner/name@revision
    if not p.exists() and "/" in str(hub_id) and not hub_id.suffix:
        return "hf"
    raise ValueError(f"{path}: cannot infer the data format from the name; pass --format one of {', '.join(FORMATS)}")


def read_dialogues(path, format: str | None = None, strict: bool = False,
                   column_mapping: dict[str, str] | None = None, split: str = "train", revision: str | None = None,
                   config_name: str | None = None) -> ReadResult:
    """Read persona dialogues from ``path`` (format inferred unless given).

    Args:
        path: a ParlAI ``.txt``, Synthetic-Persona-Chat ``.csv``, our ``.jsonl``/``.json``, a ``datasets`` folder
            (``save_to_disk``) or hub id (``owner/name``, ``owner/name@revision``), or an in-memory
            ``datasets.Dataset``.
        format: force one of ``FORMATS``. For ``datasets`` input without a column mapping the PersonaChat hub layouts
            (``personachat_turns``, ``personachat_dialogues``) are recognised by their columns.
        strict: make every repair or skip an error instead of a warning.
        column_mapping: for ``hf``: ``{"persona_a": col, "persona_b": col, "turns": col}``.
        split / revision / config_name: which split, commit and configuration of a hub dataset.
    """
    if not isinstance(path, (str, os.PathLike)):  # an in-memory datasets.Dataset
        return read_dataset(path, format, column_mapping, strict)
    fmt = format or infer_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt in DATASET_FORMATS:
        dataset = load_hf(str(path), split=split, config_name=config_name, revision=revision)
        return read_dataset(dataset, format, column_mapping, strict, name=str(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if fmt == "parlai":
        return read_parlai(path, strict)
    if fmt == "spc":
        return read_spc(path, strict)
    return read_jsonl(path, strict)


def read_dataset(dataset, format: str | None = None, column_mapping: dict[str, str] | None = None,
                 strict: bool = False, name: str = "<dataset>") -> ReadResult:
    """A ``datasets.Dataset`` in a PersonaChat hub layout (given, or recognised by its columns when there is no
    column mapping) or, otherwise, through the column mapping."""
    layout = format if format in LAYOUT_COLUMNS else None
    if format is None and not column_mapping:
        layout = detect_layout(dataset.column_names)
    if layout is not None:
        return read_personachat(dataset, layout, strict, name)
    return read_hf(dataset, column_mapping, strict, name=name)
