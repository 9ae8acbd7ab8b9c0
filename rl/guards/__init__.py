"""Auxiliary losses that guard the update against a reward hack, each behind the ``AuxLoss`` interface."""

from rl.guards.base import AuxLoss
from rl.guards.copy_guard import CopyGuard, CopyGuardLoss


def build_aux_losses(config, tokenizer) -> list[AuxLoss]:
    """The auxiliary losses a ``PPOConfig`` turns on (a positive ``*_coef``), over the policy's ``tokenizer``."""
    losses: list[AuxLoss] = []
    if config.copy_guard_coef > 0:
        losses.append(CopyGuardLoss(tokenizer, config.copy_guard_coef, config.copy_guard_threshold))
    return losses


__all__ = ["AuxLoss", "CopyGuard", "CopyGuardLoss", "build_aux_losses"]
