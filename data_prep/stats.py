"""Counts that describe a set of dialogues (``p2bot data stats``)."""

from __future__ import annotations

from collections.abc import Sequence

from data_prep.schema import PersonaDialogue


def dialogue_stats(dialogues: Sequence[PersonaDialogue]) -> dict[str, float | int]:
    personas = [tuple(p) for d in dialogues for p in (d.persona_a, d.persona_b) if p]
    turns = [len(d.turns) for d in dialogues]
    return {
        "dialogues": len(dialogues),
        "turns": sum(turns),
        "turns_per_dialogue_mean": round(sum(turns) / len(turns), 2) if turns else 0.0,
        "turns_per_dialogue_min": min(turns, default=0),
        "turns_per_dialogue_max": max(turns, default=0),
        "personas": len(personas),
        "unique_personas": len(set(personas)),
        "persona_sentences": sum(len(p) for p in personas),
        "unique_persona_sentences": len({s for p in personas for s in p}),
        "dialogues_with_candidates": sum(d.candidates is not None for d in dialogues),
        "words": sum(len(t.split()) for d in dialogues for t in d.turns),
    }
