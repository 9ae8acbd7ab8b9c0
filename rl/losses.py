"""PPO loss terms as small pure functions; each returns ``(loss, stats)`` and masks through ``masked_mean``.

Shapes: ``(B, T)`` over response tokens; ``mask`` is 1 on real response tokens, 0 on padding.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (all of them, or along ``dim``)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over the masked positions (Bessel-corrected when ``unbiased``)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the masked positions; keeps the mean when ``shift_mean`` is False.

    Padding positions come back as 0.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(x.dtype)


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate (Schulman et al. 2017, eq. 7): ``max(-A·r, -A·clip(r, 1-ε, 1+ε))``, r = π/π_old.

    The log-ratio is clamped to ±20 before ``exp`` so one runaway token cannot overflow the batch.
    """
    log_ratio = (logprobs - old_logprobs).clamp(-20.0, 20.0)  # (B, T)
    ratio = torch.exp(log_ratio)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(pg_loss1, pg_loss2), mask)
    with torch.no_grad():
        stats = {
            "policy/clipfrac": masked_mean((pg_loss2 > pg_loss1).float(), mask),
            "policy/approx_kl": masked_mean(0.5 * log_ratio**2, mask),  # Schulman's k2 estimate of KL(π_old‖π)
            "policy/ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ``½·max((V - R)², (V_old + clip(V - V_old, ±ε_v) - R)²)``."""
    values_clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    vf_loss1 = (values - returns) ** 2
    vf_loss2 = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(vf_loss1, vf_loss2), mask)
    with torch.no_grad():
        stats = {"value/clipfrac": masked_mean((vf_loss2 > vf_loss1).float(), mask), "value/mean": masked_mean(values, mask)}
    return loss, stats


def entropy_loss(entropy: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative mean token entropy (minimising it with a positive weight is an entropy bonus)."""
    mean_entropy = masked_mean(entropy, mask)
    return -mean_entropy, {"policy/entropy": mean_entropy.detach()}


def copy_unlikelihood_loss(logits: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Unlikelihood (Welleck et al. 2020) of the tokens that would complete a persona copy (``rl.guards.copy_guard``):
    ``mean over guarded positions of -log(1 - Σ_c π(c))``, c over ``candidates[b, t]`` (-1 pads). Guarded positions
    are response tokens (``mask``) with at least one candidate; the loss is 0 without any. ``logits`` (B, R, V) are
    the sampled distribution's (after the temperature)."""
    valid = candidates >= 0  # (B, R, M)
    guarded = valid.any(-1) & (mask > 0)  # (B, R)
    if not bool(guarded.any()):
        zero = (logits * 0.0).sum()
        return zero, {"copy_guard/prob": zero.detach(), "copy_guard/positions": zero.detach()}
    logp = logits[guarded].log_softmax(-1)  # (N, V)
    cand = candidates[guarded]  # (N, M)
    picked = logp.gather(1, cand.clamp(min=0)).masked_fill(~valid[guarded], float("-inf"))
    p = picked.logsumexp(-1).exp().clamp(max=1.0 - 1e-6)  # (N,) mass on the completing tokens
    loss = -torch.log1p(-p).mean()
    return loss, {"copy_guard/prob": p.mean().detach(), "copy_guard/positions": guarded.float().sum().detach()}


def reinforce_loss(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The plain policy gradient (Williams 1992), the seed's loss: ``-A·log π`` (no ratio, no clipping)."""
    loss = masked_mean(-advantages * logprobs, mask)
    return loss, {}


def kl_loss(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO's KL term (Shao et al. 2024, eq. 4): the k3 estimate ``ρ - 1 - log ρ``, ρ = π_ref/π, as a loss."""
    log_ratio = ref_logprobs - logprobs  # (B, T): log ρ
    kl = torch.expm1(log_ratio) - log_ratio
    loss = masked_mean(kl, mask)
    return loss, {"policy/kl_to_ref": loss.detach()}
