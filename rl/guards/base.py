"""``AuxLoss``: the one interface between the update and an auxiliary term (a guard against a reward hack).

The trainer holds a list of them and knows none by name. Once per step, after the rows are laid out,
``prepare(exp, rows)`` stores what the term needs in ``exp.aux[name]``; in each micro-batch, ``loss(out, mb)`` gets
the policy's forward of those rows, and ``coef * loss`` joins the micro-batch's loss, logged as ``loss/<name>``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from rl.experience import Experience, Rollout
from rl.forward import PolicyOutput


class AuxLoss(ABC):
    """An auxiliary loss term of the PPO update.

    Attributes:
        name: the key of its ``exp.aux`` entry and of its ``loss/<name>`` statistic; unique among a trainer's terms.
        coef: its weight in the micro-batch loss.
        needs_logits: whether ``loss`` reads ``out.logits`` (B, R, V); the forward keeps them only when some term
            asks, as they are the largest tensor of the update.
    """

    name: str
    coef: float
    needs_logits: bool = False

    def prepare(self, exp: Experience, rows: list[list[Rollout]]) -> None:  # noqa: B027 (a hook; optional)
        """Attach per-row data to ``exp.aux[self.name]``: tensors whose first dimension is the row (B, ...), on
        ``exp``'s device, so that mini- and micro-batches select them with the rest. ``rows[b]`` are row b's
        rollouts, one per own turn, whose responses lie end to end in the response columns. Default: nothing."""

    @abstractmethod
    def loss(self, out: PolicyOutput, mb: Experience) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, stats)`` on one micro-batch; ``mb.response_mask`` marks the trained tokens. It runs on every
        process for every micro-batch: return a zero that depends on ``out`` (not a constant) when nothing applies,
        and the same stats keys on every call."""
