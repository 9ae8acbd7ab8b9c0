"""Lexical dialogue judges: persona copying, fact coverage, echo, self-repetition, distinct-n.

Cheap, transparent measures of the hacks a persona reward invites (reciting persona sentences, echoing the
partner, looping). All work on words: ``models.scoring.lexical.content_words`` (stop-words removed) for persona
overlap, ParlAI-normalised tokens (``models.scoring.metrics.normalize_answer``) for echo and distinct-n.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from models.scoring.lexical import content_words
from models.scoring.metrics import normalize_answer

COPY_THRESHOLD = 0.8  # an utterance copies a persona sentence when it holds this share of its content words
ECHO_THRESHOLD = 0.8  # an utterance echoes another when their unigram F1 reaches this


def content_recall(utterance: str, sentence: str) -> float | None:
    """|C(u) ∩ C(s)| / |C(s)|: the share of the sentence's content words the utterance reproduces (None: s has none)."""
    s = content_words(sentence)
    if not s:
        return None
    return len(content_words(utterance) & s) / len(s)


def copies_persona(utterance: str, persona: Sequence[str], threshold: float = COPY_THRESHOLD, min_words: int = 2) -> bool:
    """True when ``utterance`` reproduces at least ``threshold`` of one persona sentence's content words.

    Sentences with fewer than ``min_words`` content words ("I am a girl.") are never counted: mentioning a
    single fact word is revealing the persona, not copying it.
    """
    return max_content_recall(utterance, persona, min_words) >= threshold


def covered_facts(utterances: Sequence[str], persona: Sequence[str], threshold: float = 0.5) -> int:
    """How many persona sentences have at least ``threshold`` of their content words in some utterance."""
    said = [content_words(u) for u in utterances]
    covered = 0
    for sentence in persona:
        s = content_words(sentence)
        if s and any(len(u & s) / len(s) >= threshold for u in said):
            covered += 1
    return covered


def token_f1(a: str, b: str) -> float:
    """Unigram F1 between the ParlAI-normalised tokens of two texts (0 when either is empty)."""
    x, y = normalize_answer(a).split(), normalize_answer(b).split()
    common = sum((Counter(x) & Counter(y)).values())
    if common == 0:
        return 0.0
    p, r = common / len(x), common / len(y)
    return 2 * p * r / (p + r)


def is_near_copy(utterance: str, other: str, threshold: float = ECHO_THRESHOLD) -> bool:
    """``utterance`` and ``other`` share at least ``threshold`` unigram F1 (and the utterance is not empty)."""
    return bool(normalize_answer(utterance)) and token_f1(utterance, other) >= threshold


def repeated_ngram_fraction(text: str, n: int = 3) -> float:
    """Share of the word n-grams of ``text`` already seen earlier in it; 0 for fewer than two n-grams.

    Words are lower-cased and stripped of surrounding punctuation; an utterance shorter than ``n`` words
    uses its unigrams.
    """
    words = [w.strip(".,!?;:\"'()").lower() for w in text.split()]
    words = [w for w in words if w]
    k = n if len(words) >= n else 1
    grams = [tuple(words[i:i + k]) for i in range(len(words) - k + 1)]
    if len(grams) < 2:
        return 0.0
    seen, repeated = set(), 0
    for g in grams:
        repeated += g in seen
        seen.add(g)
    return repeated / len(grams)


def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    """Word n-grams of the ParlAI-normalised text."""
    words = normalize_answer(text).split()
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): distinct word n-grams / all word n-grams over ``texts`` (0 when none)."""
    grams = [g for t in texts for g in ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def max_content_recall(utterance: str, persona: Sequence[str], min_words: int = 2) -> float:
    """max over persona sentences with ≥ ``min_words`` content words of ``content_recall`` (0 when none qualifies)."""
    u = content_words(utterance)
    best = 0.0
    for sentence in persona:
        s = content_words(sentence)
        if len(s) >= min_words:
            best = max(best, len(u & s) / len(s))
    return best
