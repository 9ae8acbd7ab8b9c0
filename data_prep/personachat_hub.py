"""PersonaChat as it is published on the Hugging Face Hub, in its two common layouts.

- ``personachat_turns`` (e.g. ``bavard/personachat_truecased``): one row per reply, with ``personality`` (the replying
  speaker's persona), ``candidates`` (distractors, the gold reply last), ``history`` (every utterance before the
  reply), ``conv_id`` and ``utterance_idx`` (the reply's number within its dialogue);
- ``personachat_dialogues`` (e.g. ``AlekseyKorshuk/persona-chat``): one row per dialogue, with ``personality`` and
  ``utterances`` = one ``{candidates, history}`` entry per reply.

Both tell each dialogue from the side of the speaker whose persona is given, as ConvAI2's ``self`` files do: that
speaker is our B (who answers), the partner A's persona is unknown, and a history that opens with ``__ SILENCE __``
means B spoke first. A dialogue is the last reply's history plus its gold reply; each earlier reply's history must be
a prefix of it, else the dialogue is skipped with a warning naming the row (``--strict``: an error).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from data_prep.result import ReadResult, RepairLog
from data_prep.schema import DataFormatError, PersonaDialogue

LAYOUT_COLUMNS = {
    "personachat_turns": ("personality", "candidates", "history", "conv_id", "utterance_idx"),
    "personachat_dialogues": ("personality", "utterances"),
}
SILENCE = ("__SILENCE__", "__ SILENCE __")


def detect_layout(columns: Sequence[str]) -> str | None:
    """The hub layout whose columns ``columns`` has, or None."""
    for layout, needed in LAYOUT_COLUMNS.items():
        if set(needed) <= set(columns):
            return layout
    return None


def read_personachat(dataset, layout: str, strict: bool = False, name: str = "<dataset>") -> ReadResult:
    """Read a ``datasets.Dataset`` in one of the hub layouts (see the module docstring)."""
    if layout not in LAYOUT_COLUMNS:
        raise ValueError(f"unknown PersonaChat layout {layout!r}; choose one of {', '.join(LAYOUT_COLUMNS)}")
    for column in LAYOUT_COLUMNS[layout]:
        if column not in dataset.column_names:
            raise DataFormatError(name, "row 0 (columns)", column,
                                  f"missing column of the {layout} layout; columns: {dataset.column_names}")
    log = RepairLog(name, strict)
    reader = _from_turn_rows if layout == "personachat_turns" else _from_dialogue_rows
    dialogues = [d for d in reader(dataset, log, name) if d is not None]
    return log.result(dialogues, layout)


def _rows(dataset, columns: Sequence[str]):
    """Rows as dicts, read in batches (much faster than row by row on large datasets)."""
    for batch in dataset.select_columns(list(columns)).iter(batch_size=1024):
        yield from (dict(zip(batch, values)) for values in zip(*batch.values()))


def _from_dialogue_rows(dataset, log: RepairLog, name: str):
    base = os.path.basename(name.rstrip("/"))
    for i, row in enumerate(_rows(dataset, LAYOUT_COLUMNS["personachat_dialogues"]), start=1):
        log.stats.rows_read += 1
        replies = [(u.get("history") or [], u.get("candidates") or []) for u in row["utterances"] or []]
        yield _dialogue(row["personality"], replies, log, name, f"row {i}", "utterances", f"{base}:{i}")


def _from_turn_rows(dataset, log: RepairLog, name: str):
    base = os.path.basename(name.rstrip("/"))
    groups: dict[object, list[tuple[int, dict]]] = {}  # conv_id → (row number, row), in order of first appearance
    for i, row in enumerate(_rows(dataset, LAYOUT_COLUMNS["personachat_turns"]), start=1):
        log.stats.rows_read += 1
        groups.setdefault(row["conv_id"], []).append((i, row))
    for conv_id, rows in groups.items():
        loc = f"row {rows[0][0]} (conv_id {conv_id})"
        rows = sorted(rows, key=lambda r: r[1]["utterance_idx"])
        numbers = [r["utterance_idx"] for _, r in rows]
        if numbers != list(range(len(rows))):
            log.skipped(loc, "utterance_idx", f"replies numbered {numbers}, expected 0..{len(rows) - 1}")
            continue
        if any(r["personality"] != rows[0][1]["personality"] for _, r in rows):
            log.skipped(loc, "personality", "the replies of one conv_id give different personas")
            continue
        replies = [(r["history"] or [], r["candidates"] or []) for _, r in rows]
        yield _dialogue(rows[0][1]["personality"], replies, log, name, loc, "history", f"{base}:conv{conv_id}")


def _dialogue(personality, replies, log: RepairLog, name: str, loc: str, field: str, dialogue_id: str):
    """One dialogue from its replies ``[(history, candidates), ...]``; None (logged) if they do not fit together."""
    if not replies:
        log.skipped(loc, field, "no replies")
        return None
    last_history, last_candidates = replies[-1]
    silent = bool(last_history) and last_history[0].strip() in SILENCE
    turns = [t.strip() for t in last_history[int(silent):]] + [last_candidates[-1].strip() if last_candidates else ""]
    candidates: list[list[str] | None] = [None] * len(turns)
    for k, (history, cands) in enumerate(replies):
        at = 2 * k + (0 if silent else 1)  # where B's k-th reply stands in the dialogue
        before = [t.strip() for t in history]
        if silent:
            before = before[1:] if before and before[0] in SILENCE else ["<no __ SILENCE __ opening>"]
        if not cands:
            log.skipped(loc, "candidates", f"reply {k} has no candidates")
            return None
        if at >= len(turns) or before != turns[:at] or cands[-1].strip() != turns[at]:
            log.skipped(loc, field, f"reply {k}: its history and gold reply do not continue the dialogue")
            return None
        candidates[at] = [c.strip() for c in cands]
    if at != len(turns) - 1:
        log.skipped(loc, field, "the dialogue does not end with a reply")
        return None
    d = PersonaDialogue(persona_a=[], persona_b=[p.strip() for p in personality or []], turns=turns,
                        first_speaker="B" if silent else "A", candidates=candidates, dialogue_id=dialogue_id)
    d.validate(name, loc)
    return d
