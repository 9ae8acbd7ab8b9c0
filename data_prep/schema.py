"""The one record type every reader produces and every builder consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SPEAKERS = ("A", "B")


class DataFormatError(ValueError):
    """Malformed input. The message names the file, the line or row, and the field."""

    def __init__(self, path: str, location: str, field_name: str, message: str):
        self.path, self.location, self.field_name = str(path), location, field_name
        super().__init__(f"{path}:{location}: field '{field_name}': {message}")


def other(speaker: str) -> str:
    return "B" if speaker == "A" else "A"


@dataclass
class PersonaDialogue:
    """A two-party dialogue grounded in one persona per speaker.

    Args:
        persona_a / persona_b: persona sentences of speaker A / B (empty list = unknown, as for the
            partner in ParlAI ``self`` files).
        turns: utterances, alternating speakers, starting with ``first_speaker``.
        first_speaker: ``"A"`` or ``"B"``.
        candidates: per-turn candidate lists (gold included) or ``None`` where a turn has none.
        dialogue_id: stable id (``<file>:<line or row>`` by default).
    """

    persona_a: list[str]
    persona_b: list[str]
    turns: list[str]
    first_speaker: str = "A"
    candidates: list[list[str] | None] | None = None
    dialogue_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def speaker(self, turn_index: int) -> str:
        return self.first_speaker if turn_index % 2 == 0 else other(self.first_speaker)

    def persona(self, speaker: str) -> list[str]:
        return self.persona_a if speaker == "A" else self.persona_b

    def turn_candidates(self, turn_index: int) -> list[str] | None:
        if self.candidates is None:
            return None
        return self.candidates[turn_index]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        if not record["meta"]:
            record.pop("meta")
        if record["candidates"] is None:
            record.pop("candidates")
        return record

    def validate(self, path: str, location: str) -> None:
        """Raise :class:`DataFormatError` if the record breaks the schema."""
        for name in ("persona_a", "persona_b"):
            sentences = getattr(self, name)
            if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
                raise DataFormatError(path, location, name, "must be a list of strings")
            for j, sentence in enumerate(sentences):
                if not sentence.strip():
                    raise DataFormatError(path, location, name, f"empty persona sentence at index {j}")
        if not isinstance(self.turns, list) or not all(isinstance(t, str) for t in self.turns):
            raise DataFormatError(path, location, "turns", "must be a list of strings")
        if len(self.turns) < 2:
            raise DataFormatError(
                path, location, "turns", f"unbalanced turns: {len(self.turns)} utterance(s), a dialogue needs both speakers"
            )
        for j, turn in enumerate(self.turns):
            if not turn.strip():
                raise DataFormatError(path, location, "turns", f"empty utterance at turn {j}")
        if self.first_speaker not in SPEAKERS:
            raise DataFormatError(path, location, "first_speaker", f"must be 'A' or 'B', got {self.first_speaker!r}")
        if self.candidates is not None:
            if len(self.candidates) != len(self.turns):
                raise DataFormatError(
                    path, location, "candidates",
                    f"{len(self.candidates)} candidate lists for {len(self.turns)} turns",
                )
            for j, cands in enumerate(self.candidates):
                if cands is not None and self.turns[j] not in cands:
                    raise DataFormatError(path, location, "candidates", f"turn {j}: gold response not among candidates")
