"""``copy``, ``echo`` and ``self_repeat``: penalties for the cheapest ways to please persona and fluency rewards
(use negative weights).

A policy pushed on the Receiver recites its persona sentences ("I have a dog named Max."), repeats its partner's
line, or (pushed on fluency given the history) says again what it said before: each scores well and makes a poor
conversation. Each penalty is graded: 0 up to ``start`` overlap, rising linearly to 1 at a full copy, so naming a
fact in one's own words, or answering on the same topic, costs nothing.
"""

from __future__ import annotations

from models.text_metrics import max_content_recall, token_f1
from rewards.base import as_texts, column
from rewards.registry import register_reward


def ramp(x: float, start: float) -> float:
    """0 for x ≤ start, then linear to 1 at x = 1."""
    return 0.0 if x <= start else (x - start) / (1.0 - start)


@register_reward("copy", weight=-1.0)
def copy_penalty(prompts, completions, persona=None, start: float = 0.5, min_words: int = 2, **kwargs) -> list[float]:
    """ramp(max_j recall of persona sentence j's content words in the utterance) over the speaker's own persona.

    Needs the kwarg ``persona``; sentences with fewer than ``min_words`` content words are ignored.
    """
    texts = as_texts(completions)
    personas = column({"persona": persona}, "persona", len(texts))
    if personas is None:
        raise ValueError("the copy penalty needs the kwarg 'persona' (the speaker's persona sentences)")
    return [ramp(max_content_recall(t, p, min_words), start) for t, p in zip(texts, personas)]


@register_reward("echo", weight=-1.0)
def echo_penalty(prompts, completions, history=None, start: float = 0.5, **kwargs) -> list[float]:
    """ramp(unigram F1 with the partner's last line), the last entry of the kwarg ``history`` (0 on an empty history)."""
    texts = as_texts(completions)
    histories = column({"history": history}, "history", len(texts))
    if histories is None:
        raise ValueError("the echo penalty needs the kwarg 'history' (the dialogue so far)")
    return [ramp(token_f1(t, h[-1]), start) if h else 0.0 for t, h in zip(texts, histories)]


@register_reward("self_repeat", weight=-1.0)
def self_repeat_penalty(prompts, completions, history=None, start: float = 0.5, **kwargs) -> list[float]:
    """ramp(max unigram F1 with the speaker's own earlier turns): every second entry of ``history``, from the end
    back, starting with the second to last (the last is the partner's)."""
    texts = as_texts(completions)
    histories = column({"history": history}, "history", len(texts))
    if histories is None:
        raise ValueError("the self_repeat penalty needs the kwarg 'history' (the dialogue so far)")
    return [max((ramp(token_f1(t, own), start) for own in h[-2::-2]), default=0.0) for t, h in zip(texts, histories)]
