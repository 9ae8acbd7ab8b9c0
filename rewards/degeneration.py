"""``degeneration``: how much of an utterance repeats itself ("jazz-loving jazz-loving jazz-loving ...").

The fluency reward cannot see this: after two repeats a language model finds the loop likely. The persona
reward can even pay for it (a looped persona phrase matches the persona well), so PPO drifts into such loops
within a few steps on a small policy unless something penalises them. Use with a negative weight.
"""

from __future__ import annotations

from models.scoring.text_metrics import repeated_ngram_fraction
from rewards.base import as_texts
from rewards.registry import register_reward


@register_reward("degeneration", weight=-1.0)
def degeneration(prompts, completions, n: int = 3, **kwargs) -> list[float]:
    """Per completion, the fraction of its word ``n``-grams that repeat an earlier one of the same completion."""
    return [repeated_ngram_fraction(t, n) for t in as_texts(completions)]
