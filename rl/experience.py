"""The small records passed between the stages: rollout → score → advantages → update."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Rollout:
    """One generated response and its prompt, as token ids, plus whatever the reward function needs.

    ``group`` keys the REINFORCE baseline (rollouts of the same persona pair, turn and speaker); ``info`` holds
    self-play context (persona, partner_persona, history, turn, speaker, dialogue_id) passed to rewards as kwargs.
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


@dataclass
class Experience:
    """A padded batch ready for the update; every ``(B, R)`` tensor is over response tokens.

    ``input_ids``/``attention_mask`` (B, L) hold the query left-padded to a common width ``Q`` followed by the
    response right-padded to ``R`` (L = Q + R), so every row's response starts at column ``Q``.
    ``response_index`` (B, R) is the position of the logit that predicts each response token (its position - 1),
    the same for every row; the LM head therefore only runs on the last ``logits_to_keep = R + 1`` positions.
    """

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    response_index: torch.Tensor  # (B, R)
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R)
    scores: torch.Tensor  # (B,)
    old_logprobs: torch.Tensor | None = None  # (B, R)
    ref_logprobs: torch.Tensor | None = None  # (B, R)
    old_values: torch.Tensor | None = None  # (B, R)
    advantages: torch.Tensor | None = None  # (B, R)
    returns: torch.Tensor | None = None  # (B, R)
    logits_to_keep: int = 0  # R + 1: the logits the LM head must produce (0: all positions)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> Experience:
        return Experience(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()})

    def select(self, idx: torch.Tensor) -> Experience:
        """The rows ``idx`` (a mini- or micro-batch)."""
        picked = {k: (v[idx] if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Experience(**picked)


def collate(rollouts: list[Rollout], pad_token_id: int, device: torch.device | str = "cpu") -> Experience:
    """Pad into an ``Experience``: queries left-padded, responses right-padded (scores from the rollouts; None → NaN)."""
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
    scores = torch.tensor([float("nan") if r.score is None else float(r.score) for r in rollouts], dtype=torch.float32)
    exp = Experience(input_ids, attention_mask, response_index, response_ids, response_mask, scores, logits_to_keep=R + 1)
    return exp.to(device)
