"""What each ``algo`` computes: its advantages (from a critic or from group baselines) and its loss terms.

| algo | critic | advantages | policy loss | KL to the reference |
| --- | --- | --- | --- | --- |
| ppo | value head or value model | ``advantage_estimator`` (GAE per turn, per episode, or per turn level) | clipped | in the reward |
| reinforce | none | turn return − mean (or leave-one-out mean) of its group | ``-A·log π``, one pass | in the reward |
| rloo | none | turn return − leave-one-out mean of its group | clipped | in the reward |
| grpo | none | (turn score − group mean) / group std | clipped | ``β·k3`` in the loss |

A group is the rollouts of one persona pair, turn and speaker (``Rollout.group``); a turn's return is its score
minus ``β·Σ KL`` over its tokens (GRPO: the score alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rl.advantages import gae, group_advantages, token_rewards, turn_ends, turn_gae
from rl.experience import Experience, Rollout


@dataclass(frozen=True)
class AlgoSpec:
    critic: bool  # needs values (PPO)
    group_baseline: str | None  # critic-free: "mean", "loo" or "normalized"
    clipped: bool  # PPO's clipped ratio (False: the plain policy gradient -A·log π)
    kl_in_loss: bool  # β·KL(π‖π_ref) as a loss term instead of a per-token reward


ALGO_SPECS = {
    "ppo": AlgoSpec(critic=True, group_baseline=None, clipped=True, kl_in_loss=False),
    "reinforce": AlgoSpec(critic=False, group_baseline="mean", clipped=False, kl_in_loss=False),
    "rloo": AlgoSpec(critic=False, group_baseline="loo", clipped=True, kl_in_loss=False),
    "grpo": AlgoSpec(critic=False, group_baseline="normalized", clipped=True, kl_in_loss=True),
}


def critic_advantages(estimator: str, rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                      turn_ids: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(advantages, returns, value_mask), all (B, T), by ``advantage_estimator``.

    - ``gae``: GAE inside each turn (no bootstrapping across turns; a turn is an episode);
    - ``episode_gae``: GAE over the row's own tokens, the value bootstrapped from one turn into the next;
    - ``turn_gae``: ``rl.advantages.turn_gae`` (values and returns at turn starts only).
    """
    if estimator == "gae":
        return (*gae(rewards, values, mask, gamma, lam, dones=turn_ends(turn_ids, mask)), mask)
    if estimator == "episode_gae":
        return (*gae(rewards, values, mask, gamma, lam), mask)
    if estimator == "turn_gae":
        return turn_gae(rewards, values, mask, turn_ids, gamma, lam)
    raise ValueError(f"advantage_estimator={estimator!r}: expected gae, episode_gae or turn_gae")


def turn_returns(exp: Experience, kl: torch.Tensor, beta: float) -> torch.Tensor:
    """(B, K) each turn's score minus β·Σ KL over its tokens."""
    B, K = exp.turn_scores.shape
    kl_per_turn = torch.zeros(B, K, dtype=kl.dtype, device=kl.device).scatter_add_(
        1, exp.turn_ids.clamp(min=0), kl * exp.response_mask)  # (B, K)
    return exp.turn_scores - beta * kl_per_turn


def grouped_advantages(exp: Experience, rows: Sequence[Sequence[Rollout]], returns: torch.Tensor,
                       baseline: str) -> torch.Tensor:
    """(B, T): each turn's group-baselined return (``group_advantages``) on every token of the turn."""
    B, K = returns.shape
    flat, keys = [], []
    for b in range(B):
        for k, r in enumerate(rows[b]):
            if exp.turn_mask[b, k] == 0:  # scored None: not in any group's baseline
                continue
            flat.append(b * K + k)
            keys.append(r.group if r.group is not None else ("row", b, k))
    idx = torch.tensor(flat, device=returns.device, dtype=torch.long)
    per_turn = torch.zeros(B * K, dtype=returns.dtype, device=returns.device)
    if flat:
        per_turn[idx] = group_advantages(returns.reshape(-1)[idx], keys, baseline)
    return per_turn.view(B, K).gather(1, exp.turn_ids.clamp(min=0)) * exp.response_mask  # (B, T)


def compute_advantages(spec: AlgoSpec, exp: Experience, rows: Sequence[Sequence[Rollout]], kl: torch.Tensor,
                       beta: float, *, estimator: str = "gae", baseline: str | None = None, gamma: float = 1.0,
                       lam: float = 0.95, whiten_rewards=None) -> None:
    """Fill ``exp.advantages`` (and for a critic ``exp.returns`` and ``exp.value_mask``).

    Args:
        kl: (B, T) per-token KL estimate to the reference (0 without one).
        beta: the KL coefficient (ignored in the reward for ``kl_in_loss`` algorithms).
        whiten_rewards: optional ``f(rewards, mask)`` applied to per-token rewards before GAE.
    """
    mask = exp.response_mask
    if spec.critic:
        rewards = token_rewards(exp.turn_scores, kl, mask, beta, exp.turn_ids)  # (B, T)
        if whiten_rewards is not None:
            rewards = whiten_rewards(rewards, mask)
        exp.advantages, exp.returns, exp.value_mask = critic_advantages(
            estimator, rewards, exp.old_values, mask, exp.turn_ids, gamma, lam)
    else:
        returns = turn_returns(exp, kl, 0.0 if spec.kl_in_loss else beta)  # (B, K)
        exp.advantages = grouped_advantages(exp, rows, returns, baseline or spec.group_baseline)
