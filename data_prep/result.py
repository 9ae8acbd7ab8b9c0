"""What a reader returns: the dialogues plus an account of what it read, repaired and skipped."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from data_prep.schema import DataFormatError, PersonaDialogue

logger = logging.getLogger("p2bot.data")


@dataclass
class ReadStats:
    rows_read: int = 0
    dialogues_kept: int = 0
    repaired: int = 0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReadResult:
    dialogues: list[PersonaDialogue]
    stats: ReadStats
    path: str = ""
    format: str = ""


class RepairLog:
    """Collects repairs and skips for one file; in strict mode the first one is an error."""

    def __init__(self, path: str, strict: bool):
        self.path, self.strict = str(path), strict
        self.stats = ReadStats()
        self._repaired_at: set[str] = set()

    def repaired(self, location: str, field_name: str, what: str) -> None:
        """Note a repair; ``stats.repaired`` counts the records (locations) with at least one."""
        self._note(location, field_name, f"repaired: {what}")
        self._repaired_at.add(location)
        self.stats.repaired = len(self._repaired_at)

    def skipped(self, location: str, field_name: str, why: str) -> None:
        self._note(location, field_name, f"skipped: {why}")
        self.stats.skipped += 1

    def _note(self, location: str, field_name: str, message: str) -> None:
        if self.strict:
            raise DataFormatError(self.path, location, field_name, message.split(": ", 1)[1] + " (--strict)")
        text = f"{self.path}:{location}: field '{field_name}': {message}"
        self.stats.warnings.append(text)
        logger.debug(text)

    def result(self, dialogues: list[PersonaDialogue], fmt: str) -> ReadResult:
        self.stats.dialogues_kept = len(dialogues)
        return ReadResult(dialogues=dialogues, stats=self.stats, path=self.path, format=fmt)


def decode_utf8(path: str, data: bytes) -> str:
    """Decode ``data`` as UTF-8 (BOM allowed) or raise an error naming the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataFormatError(
            path, f"line {line}", "encoding", f"not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None
