"""``fluency``: mean token log-prob of the utterance under a frozen causal LM."""

from __future__ import annotations

from typing import Any

from rewards.base import Reward, as_texts, column
from rewards.registry import register_reward


@register_reward("fluency", weight=0.5)
class FluencyReward(Reward):
    """r = (1/|u|) Σ_k log p(u_k | c, u_<k) under the frozen reference LM.

    By default (the seed's choice) the utterance is scored on its own: c is just the BOS token (EOS where the
    tokenizer has no BOS) and u its text tokens. With ``condition_on_context=True``, c is the speaker's prompt,
    ``formatter.encode_context(persona, history)`` from the kwargs ``persona`` and ``history`` (both required), and
    u is ``formatter.encode_response(text)``, so the end marker is scored too.

    Args:
        scorer: an ``LMScorer`` (default: ``pool.lm_scorer()``).
        pool: a ``ScorerPool`` to take the scorer and formatter from.
        formatter: the ``PromptFormatter`` for context mode (default: ``pool.formatter()``).
        condition_on_context: score the utterance after its context instead of on its own.
        empty_score: value for an utterance with no tokens.
    """

    name = "fluency"

    def __init__(self, scorer=None, *, pool=None, formatter=None, condition_on_context: bool = False,
                 empty_score: float = -10.0):
        if scorer is None and pool is None:
            raise ValueError("FluencyReward needs a scorer or a pool")
        if condition_on_context and formatter is None and pool is None:
            raise ValueError("fluency: condition_on_context=True needs a formatter or a pool")
        self._scorer, self._formatter, self.pool = scorer, formatter, pool
        self.condition_on_context, self.empty_score = condition_on_context, float(empty_score)

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

    def _encode(self, texts, kwargs) -> tuple[list[list[int]], list[list[int]]]:
        if not self.condition_on_context:
            tok = self.scorer.tokenizer
            return [self.scorer.start_ids] * len(texts), [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        context = {key: column(kwargs, key, len(texts)) for key in ("persona", "history")}
        missing = [key for key, value in context.items() if value is None]
        if missing:
            raise ValueError(f"fluency with condition_on_context=True needs the kwarg(s) {', '.join(map(repr, missing))} "
                             "(the speaker's persona sentences and the dialogue so far)")
        fmt = self.formatter
        prefixes = [fmt.encode_context(p, h) for p, h in zip(context["persona"], context["history"])]
        return prefixes, [fmt.encode_response(t) for t in texts]

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        texts = as_texts(completions)
        prefixes, targets = self._encode(texts, kwargs)
        means = self.scorer.mean_logprobs(prefixes, targets)
        return [self.empty_score if m is None else m for m in means]
