"""``coherence``: does the utterance follow its context, by the frozen transmitter's NUP head."""

from __future__ import annotations

from typing import Any

from rewards.base import Reward, as_texts, column
from rewards.registry import register_reward


@register_reward("coherence", weight=0.1)
class CoherenceReward(Reward):
    """r = σ(NUP(context, utterance)) − 0.5, in (−0.5, 0.5).

    The context is ``formatter.encode_context(persona, history)`` from the self-play kwargs; where those are
    missing (e.g. under ``trl.GRPOTrainer`` with a plain prompt column), the prompt text tokenized as is.
    The utterance is ``formatter.encode_response(text)``.

    Args:
        scorer: an ``NUPScorer`` (default: ``pool.nup_scorer()``).
        formatter: the transmitter's ``PromptFormatter`` (default: ``pool.formatter()``).
        pool: a ``ScorerPool``.
    """

    name = "coherence"

    def __init__(self, scorer=None, *, formatter=None, pool=None):
        if (scorer is None or formatter is None) and pool is None:
            raise ValueError("CoherenceReward needs a scorer and a formatter, or a pool")
        self._scorer, self._formatter, self.pool = scorer, formatter, pool

    @property
    def scorer(self):
        if self._scorer is None:
            self._scorer = self.pool.nup_scorer()
        return self._scorer

    @property
    def formatter(self):
        if self._formatter is None:
            self._formatter = self.pool.formatter()
        return self._formatter

    def setup(self, accelerator: Any) -> None:
        if self.pool is not None:
            self.pool.setup(accelerator)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        texts = as_texts(completions)
        fmt = self.formatter
        personas, histories = column(kwargs, "persona", len(texts)), column(kwargs, "history", len(texts))
        if personas is not None and histories is not None:
            contexts = [fmt.encode_context(p, h) for p, h in zip(personas, histories)]
        else:
            contexts = [fmt.tokenizer(p, add_special_tokens=False)["input_ids"] for p in as_texts(prompts)]
        responses = [fmt.encode_response(t) for t in texts]
        probs = self.scorer.probabilities(contexts, responses)  # (B,)
        return (probs - 0.5).tolist()
