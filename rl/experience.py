"""The small records passed between the stages: rollout → score → advantages → update."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Rollout:
    """One generated response and its prompt, as token ids, plus whatever the reward function needs.

    ``group`` keys the group baselines of REINFORCE/RLOO/GRPO (rollouts of the same persona pair, turn and
    speaker); a rollout whose ``score`` is None is not learned from (its tokens get no weight) but keeps its row,
    so that every process of a distributed run does the same number of forward/backward passes. ``info`` holds
    self-play context (persona, partner_persona, history, turn, speaker, dialogue_id)
    passed to rewards as kwargs. ``temperature`` is the one the response was sampled at: log-probs are taken of
    ``logits / temperature``, the distribution the tokens came from.
    """

    query_ids: list[int]
    response_ids: list[int]
    score: float | None = None
    group: Any = None
    trainable: bool = True
    prompt_text: str = ""
    response_text: str = ""
    components: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0


@dataclass
class Experience:
    """A padded batch ready for the update; every ``(B, R)`` tensor is over the rows' trained response tokens.

    A row is one rollout (``turn`` layout) or one speaker episode holding several own turns (``speaker`` layout,
    ``rl.episodes``). ``input_ids``/``attention_mask`` (B, L) are the rows' token sequences; ``response_index``
    (B, R) is, for each trained token, the position of the logit that predicts it (its position - 1), and
    ``keep_index`` (K,) the sorted positions whose logits the LM head must produce (every ``response_index``).
    ``turn_ids`` (B, R) says which of the row's own turns a token belongs to (-1 on padding); each turn's score
    is ``turn_scores[b, k]`` (``turn_mask`` marks real turns). ``value_mask`` is where the value loss applies
    (every response token, or turn starts for turn-level GAE). ``aux`` holds what each auxiliary loss of the update
    attached to the rows (``rl.guards.base.AuxLoss.prepare``: tensors of B rows, keyed by the loss's name).
    """

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    response_index: torch.Tensor  # (B, R)
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R)
    turn_ids: torch.Tensor  # (B, R) long
    turn_scores: torch.Tensor  # (B, K)
    turn_mask: torch.Tensor  # (B, K)
    temperature: torch.Tensor  # (B,)
    old_logprobs: torch.Tensor | None = None  # (B, R)
    ref_logprobs: torch.Tensor | None = None  # (B, R)
    old_values: torch.Tensor | None = None  # (B, R)
    advantages: torch.Tensor | None = None  # (B, R)
    returns: torch.Tensor | None = None  # (B, R)
    value_mask: torch.Tensor | None = None  # (B, R)
    aux: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (B, ...)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def scores(self) -> torch.Tensor:
        """(B,) the sum of each row's turn scores."""
        return (self.turn_scores * self.turn_mask).sum(1)

    def _map(self, fn) -> Experience:
        """A copy with ``fn`` applied to every tensor, those in ``aux`` included."""
        def apply(v):
            if isinstance(v, dict):
                return {k: apply(x) for k, x in v.items()}
            return fn(v) if isinstance(v, torch.Tensor) else v
        return Experience(**{k: apply(v) for k, v in self.__dict__.items()})

    def to(self, device: torch.device | str) -> Experience:
        return self._map(lambda t: t.to(device))

    def select(self, idx: torch.Tensor) -> Experience:
        """The rows ``idx`` (a mini- or micro-batch)."""
        return self._map(lambda t: t[idx])


def collate(rollouts: list[Rollout], pad_token_id: int, device: torch.device | str = "cpu") -> Experience:
    """The ``turn`` layout: one row per rollout, queries left-padded and responses right-padded from a common
    column ``Q``. A rollout scored None gets no weight (mask 0, ``turn_mask`` 0)."""
    B = len(rollouts)
    Q = max(len(r.query_ids) for r in rollouts)
    R = max(1, max(len(r.response_ids) for r in rollouts))
    input_ids = torch.full((B, Q + R), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((B, Q + R), dtype=torch.long)
    response_ids = torch.full((B, R), pad_token_id, dtype=torch.long)
    response_mask = torch.zeros((B, R), dtype=torch.float32)
    for i, r in enumerate(rollouts):
        q, a = len(r.query_ids), len(r.response_ids)
        if q == 0:
            raise ValueError(f"rollout {i}: empty query (the first response token needs a prompt to condition on)")
        input_ids[i, Q - q: Q + a] = torch.tensor(r.query_ids + r.response_ids, dtype=torch.long)
        attention_mask[i, Q - q: Q + a] = 1
        response_ids[i, :a] = torch.tensor(r.response_ids, dtype=torch.long)
        response_mask[i, :a] = 1.0
    response_index = (Q - 1 + torch.arange(R)).expand(B, R).clone()
    turn_ids = torch.where(response_mask > 0, 0, -1).long()
    scored = torch.tensor([[0.0 if r.score is None else 1.0] for r in rollouts])  # (B, 1)
    scores = torch.tensor([[0.0 if r.score is None else float(r.score)] for r in rollouts], dtype=torch.float32)
    exp = Experience(input_ids, attention_mask, response_index, response_ids, response_mask * scored, turn_ids=turn_ids,
                     turn_scores=scores, turn_mask=scored, temperature=torch.tensor([float(r.temperature) for r in rollouts]))
    return exp.to(device)


def trim_left(exp: Experience) -> Experience:
    """The same rows without the leading columns that are padding in every row (fewer positions to encode).

    Position ids come from the attention mask, so every kept token sees the same context at the same position."""
    used = exp.attention_mask.any(0).nonzero()
    start = int(used[0]) if len(used) else 0
    if start == 0:
        return exp
    out = exp._map(lambda t: t)
    out.input_ids, out.attention_mask = exp.input_ids[:, start:], exp.attention_mask[:, start:]
    out.response_index = (exp.response_index - start).clamp(min=0)  # padded entries (index 0) stay in range
    return out


def micro_batches(exp: Experience, idx: torch.Tensor, n: int) -> list[tuple[Experience, float]]:
    """The rows ``idx`` of a mini-batch as ``n`` micro-batches, each with its loss weight.

    Rows are grouped by length (least padding) and each micro-batch drops its all-padding columns. The weight,
    ``n`` × the micro-batch's share of the mini-batch's trained tokens, makes the accumulated gradient (the backward
    divides by ``n``) of every loss term that is a mean over trained tokens equal to that of the whole mini-batch in
    one pass, however the rows are split; a term averaged over other positions (the copy guard's) is averaged per
    micro-batch."""
    idx = idx[torch.argsort(exp.attention_mask[idx].sum(1), stable=True)]
    total = exp.response_mask[idx].sum().clamp(min=1.0)
    parts = [trim_left(exp.select(part)) for part in idx.tensor_split(n)]
    return [(mb, float(n * mb.response_mask.sum() / total)) for mb in parts]
