"""``degeneration``: how much of an utterance repeats itself ("jazz-loving jazz-loving jazz-loving ...").

The fluency reward cannot see this: after two repeats a language model finds the loop likely. The persona
reward can even pay for it (a looped persona phrase matches the persona well), so PPO drifts into such loops
within a few steps on a small policy unless something penalises them. Use with a negative weight.
"""

from __future__ import annotations

from rewards.base import as_texts
from rewards.registry import register_reward


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


@register_reward("degeneration", weight=-1.0)
def degeneration(prompts, completions, n: int = 3, **kwargs) -> list[float]:
    """Per completion, the fraction of its word ``n``-grams that repeat an earlier one of the same completion."""
    return [repeated_ngram_fraction(t, n) for t in as_texts(completions)]
