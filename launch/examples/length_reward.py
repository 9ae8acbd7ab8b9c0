"""An example of a user's own reward, kept in its own file and swapped in by YAML only.

Any callable with TRL's reward signature works: it receives the prompts, the completions (strings, or chat
message lists for conversational data) and keyword arguments (self-play passes persona, partner_persona,
history, turn, speaker and dialogue_id; trl.GRPOTrainer passes the dataset's columns), and returns one float
per completion (or None where the reward does not apply). Name it in a run config by file path or module::

    reward_funcs:
      - persona
      - {name: launch/examples/length_reward.py:length_reward, weight: 0.2, args: {target_words: 12}}

Options under ``args`` are passed as keyword arguments. A class works too: it is instantiated with ``args``,
and its instances are called like the function (see ``KeywordReward``).
"""

from __future__ import annotations


def _text(completion) -> str:
    if isinstance(completion, str):
        return completion
    return " ".join(m.get("content", "") for m in completion if m.get("role", "assistant") == "assistant")


def length_reward(prompts, completions, target_words: int = 12, **kwargs) -> list[float]:
    """1 at exactly ``target_words`` words, falling linearly to 0 at twice (or zero) that length, then below."""
    return [1.0 - abs(len(_text(c).split()) - target_words) / target_words for c in completions]


class KeywordReward:
    """+1 per listed keyword the completion mentions (case-insensitive), capped at ``cap``."""

    needs_dialogue = False

    def __init__(self, keywords: list[str], cap: int = 3):
        self.keywords, self.cap = [k.lower() for k in keywords], cap
        self.__name__ = "keyword"

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return [float(min(self.cap, sum(k in _text(c).lower() for k in self.keywords))) for c in completions]
