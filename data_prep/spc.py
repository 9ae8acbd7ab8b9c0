"""Synthetic-Persona-Chat CSV: ``user 1 personas``, ``user 2 personas``, ``Best Generated Conversation``.

User 1 is our speaker A, User 2 speaker B. Generated conversations are messy in a few percent of rows;
:func:`parse_labelled_conversation` repairs what is unambiguous and reports the rest (see DESIGN §2).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from data_prep.result import ReadResult, RepairLog, decode_utf8
from data_prep.schema import DataFormatError, PersonaDialogue

COLUMNS = {"persona_a": "user 1 personas", "persona_b": "user 2 personas", "conversation": "best generated conversation"}
# "User 1: hi", "*User 1:* hi", "* * User 2: hi", "[User 2]: hi", "user 1 : hi"
_LABEL = re.compile(r"^[\s*\[(]*user\s*([12])\s*[*\])]*\s*:\s*\**\s*(.*)$", re.IGNORECASE)
_CLEAN = re.compile(r"^User [12]: ")
# whole-line scene notes: "[A few minutes later]", "(They walk.)", "* * *", "[They continue walking."
_SCENE = re.compile(r"^\s*(\[.*\]?|\(.*\)|[*\s]+|\[.*)\s*$")


def split_persona(cell: str) -> list[str]:
    return [s.strip() for s in cell.splitlines() if s.strip()]


def parse_labelled_conversation(text: str, log: RepairLog, loc: str, field_name: str):
    """``User 1: ...`` lines → (turns, first_speaker) or ``None`` when the conversation must be skipped."""
    speakers: list[str] = []
    turns: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _LABEL.match(line)
        if m is None:
            if _SCENE.match(line):
                log.repaired(loc, field_name, f"dropped scene note {line.strip()[:40]!r}")
            elif not turns:
                log.skipped(loc, field_name, f"unlabelled line before the first turn: {line.strip()[:40]!r}")
                return None
            else:
                turns[-1] = f"{turns[-1]} {line.strip()}"
                log.repaired(loc, field_name, f"joined unlabelled line to the turn before: {line.strip()[:40]!r}")
            continue
        if not _CLEAN.match(line):
            log.repaired(loc, field_name, f"normalised speaker label {line.strip()[:16]!r}")
        speaker, utterance = "A" if m.group(1) == "1" else "B", m.group(2).strip().rstrip("*").strip()
        if not utterance:
            log.repaired(loc, field_name, "dropped an empty turn")
            continue
        if speakers and speakers[-1] == speaker:
            turns[-1] = f"{turns[-1]} {utterance}"
            log.repaired(loc, field_name, f"merged two consecutive turns of User {m.group(1)}")
            continue
        speakers.append(speaker)
        turns.append(utterance)
    if len(turns) < 2:
        log.skipped(loc, field_name, f"unbalanced turns: {len(turns)} turn(s) after parsing")
        return None
    return turns, speakers[0]


def _header(path: str, fieldnames: list[str] | None) -> dict[str, str]:
    found = {name.strip().lower(): name for name in fieldnames or []}
    out = {}
    for key, column in COLUMNS.items():
        if column not in found:
            raise DataFormatError(path, "line 1 (header)", column, f"missing column; the header has {list(found)}")
        out[key] = found[column]
    return out


def read_spc(path: str | Path, strict: bool = False) -> ReadResult:
    path = str(path)
    text = decode_utf8(path, Path(path).read_bytes())
    log = RepairLog(path, strict)
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        columns = _header(path, reader.fieldnames)
    except csv.Error as err:
        raise DataFormatError(path, "line 1 (header)", "csv", str(err)) from None
    dialogues = []
    row_no = 0
    while True:
        start_line = reader.line_num + 1  # a quoted cell may span lines: name the row's first line
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DataFormatError(path, f"row {row_no + 1} (line {start_line})", "csv", f"broken CSV: {err}") from None
        row_no += 1
        log.stats.rows_read += 1
        loc = f"row {row_no} (line {start_line})"
        if None in row or any(row[c] is None for c in columns.values()):
            raise DataFormatError(path, loc, "csv", "wrong number of fields (truncated quote?)")
        personas = {}
        for key in ("persona_a", "persona_b"):
            personas[key] = split_persona(row[columns[key]])
            if not personas[key]:
                raise DataFormatError(path, loc, COLUMNS[key], "empty persona")
        parsed = parse_labelled_conversation(row[columns["conversation"]], log, loc, COLUMNS["conversation"])
        if parsed is None:
            continue
        turns, first = parsed
        d = PersonaDialogue(persona_a=personas["persona_a"], persona_b=personas["persona_b"], turns=turns,
                            first_speaker=first, dialogue_id=f"{Path(path).name}:{row_no}")
        d.validate(path, loc)
        dialogues.append(d)
    return log.result(dialogues, "spc")
