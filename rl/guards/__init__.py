"""Auxiliary losses that guard the update against a reward hack, each behind the ``AuxLoss`` interface."""
