"""Our own format: one :class:`PersonaDialogue` per JSON line (``.jsonl``) or a JSON array (``.json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from data_prep.result import ReadResult, RepairLog, decode_utf8
from data_prep.schema import DataFormatError, PersonaDialogue

REQUIRED = ("persona_a", "persona_b", "turns")
OPTIONAL = ("first_speaker", "candidates", "dialogue_id", "meta")


def record_to_dialogue(record, path: str, loc: str, default_id: str) -> PersonaDialogue:
    if not isinstance(record, dict):
        raise DataFormatError(path, loc, "record", f"expected a JSON object, got {type(record).__name__}")
    for name in REQUIRED:
        if name not in record:
            raise DataFormatError(path, loc, name, "missing field")
    unknown = sorted(set(record) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise DataFormatError(path, loc, unknown[0], f"unknown field (known: {', '.join(REQUIRED + OPTIONAL)})")
    d = PersonaDialogue(
        persona_a=record["persona_a"], persona_b=record["persona_b"], turns=record["turns"],
        first_speaker=record.get("first_speaker", "A"), candidates=record.get("candidates"),
        dialogue_id=str(record.get("dialogue_id") or default_id), meta=record.get("meta") or {},
    )
    d.validate(path, loc)
    return d


def read_jsonl(path: str | Path, strict: bool = False) -> ReadResult:
    path = str(path)
    text = decode_utf8(path, Path(path).read_bytes())
    log = RepairLog(path, strict)
    name = Path(path).name
    dialogues = []
    if path.endswith(".json") and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, f"line {err.lineno}", "json", err.msg) from None
        for i, rec in enumerate(records, start=1):
            log.stats.rows_read += 1
            dialogues.append(record_to_dialogue(rec, path, f"item {i}", f"{name}:{i}"))
        return log.result(dialogues, "jsonl")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        log.stats.rows_read += 1
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, f"line {lineno}", "json", f"{err.msg} (column {err.colno})") from None
        dialogues.append(record_to_dialogue(rec, path, f"line {lineno}", f"{name}:{lineno}"))
    return log.result(dialogues, "jsonl")


def write_jsonl(dialogues: Iterable[PersonaDialogue], path: str | Path) -> int:
    """Write dialogues as JSONL atomically; returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for d in dialogues:
            f.write(json.dumps(d.to_dict(), ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it the file
    os.replace(tmp, path)
    return n
