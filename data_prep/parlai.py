"""ParlAI / ConvAI2 text files (``train_self_original.txt``, ``valid_both_revised.txt``, ...).

Each episode restarts its line numbers at 1. ``your persona:`` lines give the persona of the speaker who
answers (our speaker B), ``partner's persona:`` lines the persona of the one who opens (speaker A). Dialogue
lines are ``text<TAB>label[<TAB>reward<TAB>cand1|cand2|...]``; candidates belong to the label.
"""

from __future__ import annotations

import re
from pathlib import Path

from data_prep.result import ReadResult, RepairLog, decode_utf8
from data_prep.schema import DataFormatError, PersonaDialogue

SILENCE = "__SILENCE__"
_LINE = re.compile(r"^(\d+) (.*)$")
_SELF = ("your persona:",)
_PARTNER = ("partner's persona:", "partner persona:")


def parlai_variant(path: str | Path) -> dict[str, str]:
    """Persona visibility (self/both/none/other) and persona version (original/revised) from the file name."""
    name = Path(path).name.lower()
    meta = {}
    for key in ("self", "both", "none", "other"):
        if f"_{key}_" in name or name.startswith(f"{key}_"):
            meta["persona_visibility"] = key
    for key in ("original", "revised"):  # the seed swapped these two; we take the name at its word
        if key in name:
            meta["persona_version"] = key
    return meta


class _Episode:
    def __init__(self, start_line: int):
        self.start_line = start_line
        self.persona_a: list[str] = []
        self.persona_b: list[str] = []
        self.turns: list[str] = []
        self.candidates: list[list[str] | None] = []
        self.first_speaker = "A"


def _persona_line(ep: _Episode, body: str, path: str, loc: str) -> bool:
    low = body.lower()
    for prefixes, target, name in ((_SELF, ep.persona_b, "your persona"), (_PARTNER, ep.persona_a, "partner's persona")):
        for prefix in prefixes:
            if low.startswith(prefix):
                if ep.turns:
                    raise DataFormatError(path, loc, name, "persona line after the dialogue has started")
                sentence = body[len(prefix) :].strip()
                if not sentence:
                    raise DataFormatError(path, loc, name, "empty persona sentence")
                target.append(sentence)
                return True
    return False


def _dialogue_line(ep: _Episode, body: str, path: str, loc: str) -> None:
    fields = body.split("\t")
    if len(fields) < 2 or not fields[1].strip():
        raise DataFormatError(path, loc, "label", "unbalanced turns: utterance without a tab-separated response")
    text, label = fields[0].strip(), fields[1].strip()
    cands = None
    if len(fields) >= 4 and fields[3].strip():
        cands = [c.strip() for c in fields[3].split("|") if c.strip()]
        if label not in cands:
            raise DataFormatError(path, loc, "candidates", "the response is not among its candidates")
    if text == SILENCE and not ep.turns:
        ep.first_speaker = "B"
    else:
        if not text:
            raise DataFormatError(path, loc, "text", "empty utterance")
        ep.turns.append(text)
        ep.candidates.append(None)
    ep.turns.append(label)
    ep.candidates.append(cands)


def read_parlai(path: str | Path, strict: bool = False) -> ReadResult:
    path = str(path)
    text = decode_utf8(path, Path(path).read_bytes())
    log = RepairLog(path, strict)
    meta = parlai_variant(path)
    dialogues: list[PersonaDialogue] = []
    ep: _Episode | None = None
    expected = 1

    def close(episode: _Episode | None) -> None:
        if episode is None:
            return
        loc = f"line {episode.start_line}"
        if not episode.turns:
            raise DataFormatError(path, loc, "turns", "episode has persona lines but no dialogue")
        has_cands = any(c is not None for c in episode.candidates)
        d = PersonaDialogue(
            persona_a=episode.persona_a, persona_b=episode.persona_b, turns=episode.turns,
            first_speaker=episode.first_speaker, candidates=episode.candidates if has_cands else None,
            dialogue_id=f"{Path(path).name}:{episode.start_line}", meta=dict(meta),
        )
        d.validate(path, loc)
        dialogues.append(d)

    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        loc = f"line {lineno}"
        m = _LINE.match(raw)
        if not m:
            raise DataFormatError(path, loc, "line number", "a ParlAI line starts with its number and a space")
        number, body = int(m.group(1)), m.group(2)
        if number == 1:
            close(ep)
            ep, expected = _Episode(lineno), 1
            log.stats.rows_read += 1
        if ep is None or number != expected:
            raise DataFormatError(path, loc, "line number", f"expected {expected}, got {number}")
        expected += 1
        if not _persona_line(ep, body, path, loc):
            _dialogue_line(ep, body, path, loc)
    close(ep)
    return log.result(dialogues, "parlai")
