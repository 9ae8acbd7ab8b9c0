"""Rewards per token, advantages and returns, as functions over ``(B, T)`` response-token tensors.

``mask`` marks real response tokens; responses are right-padded, so each row's mask is a prefix of ones. A row may
hold several turns of one speaker (``rl.episodes``): ``turn_ids`` (B, T) numbers them (-1 on padding).
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


def turn_ends(turn_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the last token of each turn (the next token belongs to another turn, or is padding)."""
    real = mask > 0
    nxt = torch.cat([turn_ids[:, 1:], torch.full_like(turn_ids[:, :1], -1)], dim=1)
    nxt_real = torch.cat([real[:, 1:], torch.zeros_like(real[:, :1])], dim=1)
    return real & (~nxt_real | (nxt != turn_ids))


def turn_starts(turn_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the first token of each turn."""
    real = mask > 0
    prev = torch.cat([torch.full_like(turn_ids[:, :1], -1), turn_ids[:, :-1]], dim=1)
    return real & (prev != turn_ids)


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float,
                  turn_ids: torch.Tensor | None = None) -> torch.Tensor:
    """``r_t = -β·KL_t`` on every response token, plus each turn's score on that turn's last token.

    Args:
        scores: (B,) one score per row, or (B, K) one per turn of the row (with ``turn_ids``).
        kl: (B, T) per-token KL estimate.
        mask: (B, T) response mask (a row with no tokens gets no score).
        kl_coef: β.
        turn_ids: (B, T) turn of each token (default: one turn per row).
    Returns: (B, T) rewards, 0 on padding.
    """
    rewards = -kl_coef * kl * mask  # (B, T)
    if turn_ids is None:
        turn_ids = torch.where(mask > 0, 0, -1).long()
    if scores.dim() == 1:
        scores = scores[:, None]  # (B, 1)
    ends = turn_ends(turn_ids, mask)  # (B, T)
    placed = scores.to(rewards.dtype).gather(1, turn_ids.clamp(min=0))  # (B, T): the token's turn score
    return rewards + torch.where(ends, placed, torch.zeros_like(rewards))


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float,
    dones: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over response tokens.

    ``δ_t = r_t + γ·V_{t+1}·m_{t+1}·(1-d_t) - V_t`` and ``A_t = δ_t + γλ·m_{t+1}·(1-d_t)·A_{t+1}``: the episode
    ends after the last real token and after every token with ``dones`` set (no bootstrapping across it);
    returns ``R_t = A_t + V_t``.

    Args:
        rewards, values, mask: (B, T).
        dones: (B, T) bool, an episode ends after this token (default: only after the last real one).
    Returns: (advantages, returns), both (B, T), 0 on padding.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    go_on = torch.ones_like(mask) if dones is None else 1.0 - dones.to(values.dtype)  # (B, T)
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(T)):
        next_mask = (mask[:, t + 1] if t + 1 < T else torch.zeros_like(last_gae)) * go_on[:, t]
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value * next_mask - values[:, t]
        last_gae = delta + gamma * lam * next_mask * last_gae
        advantages[:, t] = last_gae
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def turn_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, turn_ids: torch.Tensor, gamma: float,
             lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn-level GAE (cf. Turn-PPO, arXiv 2512.17008): one state per turn, advantages broadcast to its tokens.

    A turn's value V_k is read at its first token (the state at the turn boundary, before the turn is said), its
    reward R_k is the sum of its token rewards; ``δ_k = R_k + γ·V_{k+1} - V_k``, ``A_k = δ_k + γλ·A_{k+1}`` over
    the row's turns, and every token of turn k gets A_k.

    Args:
        rewards, values, mask, turn_ids: (B, T).
    Returns: (advantages (B, T), returns (B, T) = A_k + V_k at each turn's first token and 0 elsewhere,
        value_mask (B, T): the turns' first tokens).
    """
    B = rewards.shape[0]
    K = int(turn_ids.max().item()) + 1 if bool((turn_ids >= 0).any()) else 1
    real = mask > 0
    tid = turn_ids.clamp(min=0)
    turn_r = torch.zeros(B, K, dtype=rewards.dtype, device=rewards.device).scatter_add_(1, tid, rewards * mask)  # (B, K)
    starts = turn_starts(turn_ids, mask)  # (B, T)
    turn_v = torch.zeros(B, K, dtype=values.dtype, device=values.device).scatter_add_(1, tid, values * starts)  # (B, K)
    turn_m = torch.zeros(B, K, dtype=values.dtype, device=values.device).scatter_add_(1, tid, starts.to(values.dtype))
    adv_k, _ = gae(turn_r, turn_v, turn_m, gamma, lam)  # (B, K): turns as time steps
    advantages = adv_k.gather(1, tid) * mask  # (B, T)
    returns = torch.where(starts, (adv_k + turn_v * turn_m).gather(1, tid), torch.zeros_like(values))
    return advantages, returns * real, starts.to(mask.dtype)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Whitening over the masked tokens of a batch (see ``rl.losses.masked_whiten``)."""
    return masked_whiten(x, mask, shift_mean=shift_mean)


GROUP_BASELINES = ("mean", "loo", "normalized")


def group_advantages(returns: torch.Tensor, groups: Sequence[Hashable], baseline: str = "mean", eps: float = 1e-6) -> torch.Tensor:
    """Critic-free advantages from groups of rollouts that share a key (same persona pair, turn and speaker).

    - ``mean`` (REINFORCE with the mean of N as baseline, the seed's estimator): ``A_i = R_i - mean_g R``;
    - ``loo`` (leave-one-out, RLOO, Ahmadian et al. 2024): ``A_i = R_i - (Σ_g R - R_i)/(n_g - 1)``;
    - ``normalized`` (GRPO, Shao et al. 2024): ``A_i = (R_i - mean_g R) / (std_g R + eps)``.

    Args:
        returns: (N,) one return per sample.
        groups: N group keys.
    Returns: (N,) advantages; a group of one gets 0.
    """
    if baseline not in GROUP_BASELINES:
        raise ValueError(f"baseline={baseline!r}: expected one of {GROUP_BASELINES}")
    index: dict[Hashable, int] = {}
    ids = torch.tensor([index.setdefault(g, len(index)) for g in groups], device=returns.device)
    zeros = torch.zeros(len(index), dtype=returns.dtype, device=returns.device)
    sums = zeros.clone().index_add_(0, ids, returns)
    counts = zeros.clone().index_add_(0, ids, torch.ones_like(returns))
    n = counts[ids]
    mean = (sums / counts)[ids]
    if baseline == "mean":
        adv = returns - mean
    elif baseline == "loo":
        adv = torch.where(n > 1, (returns - (sums[ids] - returns) / (n - 1).clamp(min=1)), torch.zeros_like(returns))
    else:
        sq = zeros.clone().index_add_(0, ids, (returns - mean) ** 2)
        std = (sq / counts).sqrt()[ids]  # population std of the group
        adv = (returns - mean) / (std + eps)
    return torch.where(n > 1, adv, torch.zeros_like(adv))


def group_baseline_advantages(returns: torch.Tensor, groups: Sequence[Hashable]) -> torch.Tensor:
    """REINFORCE with the mean of N rollouts as baseline (``group_advantages(..., "mean")``)."""
    return group_advantages(returns, groups, "mean")
