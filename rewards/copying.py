"""``copy``, ``echo`` and ``self_repeat``: penalties for the cheapest ways to please persona and fluency rewards
(use negative weights).

A policy pushed on the Receiver recites its persona sentences ("I have a dog named Max."), repeats its partner's
line, or (pushed on fluency given the history) says again what it said before: each scores well and makes a poor
conversation. Each penalty is graded by default (``shape: ramp``): 0 up to ``start`` overlap, rising linearly to 1 at
a full copy, so naming a fact in one's own words, or answering on the same topic, costs nothing. Each can also be a
step (``shape: step``): 1 from ``start`` on, 0 below, so that a near-paraphrase costs nothing and a restated line
costs the full weight (a ramp steep enough to stop copies also taxes every partial mention; README, "Reward hacks").
"""

from __future__ import annotations

from models.scoring.text_metrics import max_content_recall, token_f1
from rewards.base import as_texts, column
from rewards.registry import register_reward


def ramp(x: float, start: float) -> float:
    """0 for x ≤ start, then linear to 1 at x = 1."""
    return 0.0 if x <= start else (x - start) / (1.0 - start)


def step(x: float, start: float) -> float:
    """0 for x < start, 1 from start on."""
    return 1.0 if x >= start else 0.0


SHAPES = {"ramp": ramp, "step": step}


def _shape(penalty: str, shape: str):
    if shape not in SHAPES:
        raise ValueError(f"{penalty} penalty: shape={shape!r}, expected one of {tuple(SHAPES)}")
    return SHAPES[shape]


@register_reward("copy", weight=-1.0)
def copy_penalty(prompts, completions, persona=None, start: float = 0.5, min_words: int = 2, shape: str = "ramp",
                 **kwargs) -> list[float]:
    """shape(max_j recall of persona sentence j's content words in the utterance) over the speaker's own persona,
    ``shape`` being ``ramp`` (graded from ``start``) or ``step`` (1 from ``start`` on: the eval's copy rate counts
    recall ≥ ``models.scoring.text_metrics.COPY_THRESHOLD``).

    Needs the kwarg ``persona``; sentences with fewer than ``min_words`` content words are ignored.
    """
    grade = _shape("copy", shape)
    texts = as_texts(completions)
    personas = column({"persona": persona}, "persona", len(texts))
    if personas is None:
        raise ValueError("the copy penalty needs the kwarg 'persona' (the speaker's persona sentences)")
    return [grade(max_content_recall(t, p, min_words), start) for t, p in zip(texts, personas)]


@register_reward("echo", weight=-1.0)
def echo_penalty(prompts, completions, history=None, start: float = 0.5, shape: str = "ramp", **kwargs) -> list[float]:
    """shape(unigram F1 with the partner's last line), the last entry of the kwarg ``history`` (0 on an empty
    history)."""
    grade = _shape("echo", shape)
    texts = as_texts(completions)
    histories = column({"history": history}, "history", len(texts))
    if histories is None:
        raise ValueError("the echo penalty needs the kwarg 'history' (the dialogue so far)")
    return [grade(token_f1(t, h[-1]), start) if h else 0.0 for t, h in zip(texts, histories)]


@register_reward("self_repeat", weight=-1.0)
def self_repeat_penalty(prompts, completions, history=None, start: float = 0.5, shape: str = "ramp",
                        **kwargs) -> list[float]:
    """shape(max unigram F1 with the speaker's own earlier turns): every second entry of ``history``, from the end
    back, starting with the second to last (the last is the partner's)."""
    grade = _shape("self_repeat", shape)
    texts = as_texts(completions)
    histories = column({"history": history}, "history", len(texts))
    if histories is None:
        raise ValueError("the self_repeat penalty needs the kwarg 'history' (the dialogue so far)")
    return [max((grade(token_f1(t, own), start) for own in h[-2::-2]), default=0.0) for t, h in zip(texts, histories)]
