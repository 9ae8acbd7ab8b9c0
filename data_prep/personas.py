"""Persona identity: when two persona sentences are the same sentence, and two personas the same persona.

Data sets write one persona fact in several ways ("I love hiking." / "i love hiking" / "I  love hiking !"), so
sentences are compared after ``normalize_sentence``; a persona is the set of its normalised sentences
(``persona_key``: order, case, punctuation and spacing do not matter), and two personas overlap when they
share one (``shares_sentence``): a persona holding the fact an utterance reveals is no negative for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_APOSTROPHES = re.compile(r"['\u2019]")
_NON_WORD = re.compile(r"[^\w]+")


def normalize_sentence(sentence: str) -> str:
    """Lower-case, apostrophes dropped ("i'm" → "im"), other punctuation → space, whitespace squeezed."""
    text = _APOSTROPHES.sub("", sentence.lower())
    return " ".join(_NON_WORD.sub(" ", text).replace("_", " ").split())


def persona_key(persona: Iterable[str]) -> frozenset[str]:
    """A persona's identity: the set of its normalised, non-empty sentences."""
    return frozenset(k for k in map(normalize_sentence, persona) if k)


def shares_sentence(a: Iterable[str], b: Iterable[str]) -> bool:
    """True when personas ``a`` and ``b`` hold a sentence in common (after ``normalize_sentence``)."""
    return not persona_key(a).isdisjoint(persona_key(b))
