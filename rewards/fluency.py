"""``fluency``: mean token log-prob of the utterance under a frozen causal LM."""

from __future__ import annotations

from typing import Any

from rewards.base import Reward, as_texts, column
from rewards.registry import register_reward


@register_reward("fluency", weight=0.5)
class FluencyReward(Reward):
    """r = (1/|u|) Σ_k log p(u_k | c, u_<k) under the frozen reference LM.

    By default (the seed's choice) the utterance is scored on its own: c is just the BOS token (EOS where the
    tokenizer has no BOS) and u its text tokens. With ``condition_on_context=True``, c is the speaker's prompt
    (``formatter.encode_context(persona, history)`` when those kwargs are given, else the tokenized prompt) and u
    is ``formatter.encode_response(text)``, so the end marker is scored too. ``persona_in_context=False`` leaves the
    persona out of c (``formatter.encode_history_context(history)``): the judge then no longer finds the
    speaker's persona sentences in the context, so restating one is not made more predictable than any other turn
    (measured on the recipe: fewer loops, no less copying; README, "Fluency without the persona in its context").

    Args:
        scorer: an ``LMScorer`` (default: ``pool.lm_scorer()``).
        pool: a ``ScorerPool`` to take the scorer and formatter from.
        formatter: the ``PromptFormatter`` for context mode (default: ``pool.formatter()``).
        condition_on_context: score the utterance after its context instead of on its own.
        persona_in_context: with ``condition_on_context``, whether that context holds the speaker's persona (needs the
            kwarg ``history`` and a ``PromptFormatter`` when False).
        empty_score: value for an utterance with no tokens.
    """

    name = "fluency"

    def __init__(self, scorer=None, *, pool=None, formatter=None, condition_on_context: bool = False,
                 persona_in_context: bool = True, empty_score: float = -10.0):
        if scorer is None and pool is None:
            raise ValueError("FluencyReward needs a scorer or a pool")
        self._scorer, self._formatter, self.pool = scorer, formatter, pool
        self.condition_on_context, self.empty_score = condition_on_context, float(empty_score)
        self.persona_in_context = bool(persona_in_context)
        if not self.persona_in_context and not condition_on_context:
            raise ValueError("fluency: persona_in_context=False only applies with condition_on_context=True")

    @property
    def scorer(self):
        if self._scorer is None:
            self._scorer = self.pool.lm_scorer()
        return self._scorer

    @property
    def formatter(self):
        if self._formatter is None and self.pool is not None:
            self._formatter = self.pool.formatter()
        return self._formatter

    def setup(self, accelerator: Any) -> None:
        if self.pool is not None:
            self.pool.setup(accelerator)

    def _encode(self, prompts, texts, kwargs) -> tuple[list[list[int]], list[list[int]]]:
        tok = self.scorer.tokenizer
        if not self.condition_on_context:
            return [self.scorer.start_ids] * len(texts), [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        personas, histories = column(kwargs, "persona", len(texts)), column(kwargs, "history", len(texts))
        fmt = self.formatter
        if not self.persona_in_context:
            if histories is None or fmt is None:
                raise ValueError("fluency with persona_in_context=False needs the kwarg 'history' and a formatter")
            prefixes = [fmt.encode_history_context(h) or self.scorer.start_ids for h in histories]
        elif personas is not None and histories is not None and fmt is not None:
            prefixes = [fmt.encode_context(p, h) for p, h in zip(personas, histories)]
        else:
            prefixes = [self.scorer.start_ids + tok(p, add_special_tokens=False)["input_ids"] for p in as_texts(prompts)]
        if fmt is not None:
            targets = [fmt.encode_response(t) for t in texts]
        else:
            targets = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        return prefixes, targets

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        texts = as_texts(completions)
        prefixes, targets = self._encode(prompts, texts, kwargs)
        means = self.scorer.mean_logprobs(prefixes, targets)
        return [self.empty_score if m is None else m for m in means]
