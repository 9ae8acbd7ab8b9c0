"""Rewards per token, advantages and returns, as functions over ``(B, T)`` response-token tensors.

``mask`` marks real response tokens; responses are right-padded, so each row's mask is a prefix of ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from rl.losses import masked_whiten


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate from sampled tokens (Schulman, "Approximating KL divergence", 2020).

    k1: ``log π - log π_ref`` (unbiased, can be negative); k3: ``(ρ - 1) - log ρ`` with ``ρ = π_ref/π`` (unbiased,
    never negative). Shapes ``(B, T)``.
    """
    log_ratio = ref_logprobs - logprobs  # log ρ
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"kl estimator {estimator!r}: expected 'k1' or 'k3'")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """``r_t = -β·KL_t`` on every response token, plus the sequence score on the last one.

    Args:
        scores: (B,) one scalar reward per response.
        kl: (B, T) per-token KL estimate.
        mask: (B, T) response mask (a prefix of ones per row; a row with no tokens gets no score).
        kl_coef: β.
    Returns: (B, T) rewards, 0 on padding.
    """
    rewards = -kl_coef * kl * mask  # (B, T)
    lengths = mask.sum(1).long()  # (B,)
    has_tokens = lengths > 0
    last = (lengths - 1).clamp(min=0)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows[has_tokens], last[has_tokens]] += scores[has_tokens].to(rewards.dtype)
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over response tokens.

    ``δ_t = r_t + γ·V_{t+1}·m_{t+1} - V_t`` and ``A_t = δ_t + γλ·m_{t+1}·A_{t+1}`` (the episode ends after the last
    real token: V and A beyond it count as 0); returns ``R_t = A_t + V_t``.

    Args:
        rewards, values, mask: (B, T).
    Returns: (advantages, returns), both (B, T), 0 on padding.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(T)):
        next_mask = mask[:, t + 1] if t + 1 < T else torch.zeros_like(last_gae)
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value * next_mask - values[:, t]
        last_gae = delta + gamma * lam * next_mask * last_gae
        advantages[:, t] = last_gae
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Whitening over the masked tokens of a batch (see ``rl.losses.masked_whiten``)."""
    return masked_whiten(x, mask, shift_mean=shift_mean)


def group_baseline_advantages(returns: torch.Tensor, groups: Sequence[Hashable]) -> torch.Tensor:
    """REINFORCE with the mean of N rollouts as baseline (the seed's estimator): ``A_i = R_i - mean_{j∈g(i)} R_j``.

    Args:
        returns: (B,) one return per response.
        groups: B group keys; rollouts sharing a key (same persona pair, turn and speaker) share a baseline.
    Returns: (B,) advantages; a group of one gets 0.
    """
    index: dict[Hashable, int] = {}
    ids = torch.tensor([index.setdefault(g, len(index)) for g in groups], device=returns.device)
    sums = torch.zeros(len(index), dtype=returns.dtype, device=returns.device).index_add_(0, ids, returns)
    counts = torch.zeros(len(index), dtype=returns.dtype, device=returns.device).index_add_(0, ids, torch.ones_like(returns))
    return returns - (sums / counts)[ids]
