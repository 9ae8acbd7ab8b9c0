"""The lagged partner (``partner: lagged``): a frozen copy of the policy that speaks as B, refreshed every N steps.

Playing against its own past self gives the policy a partner that improves with it but does not move within a
batch (a stationary environment for each update), as self-play in games does. Only the trainable parameters are
copied at a sync (the LoRA adapters, when the policy has them), and they are what a checkpoint stores, so a resumed
run talks to exactly the partner it had.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PARTNER_FILE = "lagged_partner.safetensors"


class LaggedPartner:
    """Args:
        model: the partner: a frozen model of the policy's architecture (LoRA adapters included), loaded outside
            any ZeRO-3 partitioning; the trainer syncs it from the policy when it starts.
        sync_steps: copy the policy's trainable weights into the partner after every this many updates.
    """

    def __init__(self, model, sync_steps: int):
        if sync_steps < 1:
            raise ValueError(f"sync_steps={sync_steps}: must be at least 1")
        self.model = model.eval().requires_grad_(False)
        self.sync_steps, self.synced_at = sync_steps, 0
        self.names: list[str] = []  # the policy's trainable parameters, fixed at the first sync
        self._params = dict(self.model.named_parameters())

    @torch.no_grad()
    def sync(self, policy, step: int) -> None:
        """Copy the trainable weights of ``policy`` (gathered, under ZeRO-3) into the partner."""
        policy = getattr(policy, "policy", policy)  # a PolicyWithCritic: the policy part
        source = dict(policy.named_parameters())
        if not self.names:
            heads = ("value_head.", "nup_head.")  # the partner only speaks: it needs the LM's weights
            self.names = [n for n, p in source.items() if p.requires_grad and not n.startswith(heads)]
            missing = [n for n in self.names if n not in self._params]
            if missing:
                raise ValueError(f"the partner lacks {len(missing)} of the policy's trainable parameters, e.g. {missing[0]!r}")
        for name in self.names:
            self._params[name].copy_(source[name].detach().to(self._params[name].dtype))
        self.synced_at = step

    def due(self, step: int) -> bool:
        return step % self.sync_steps == 0

    def save(self, directory: str | os.PathLike) -> None:
        tensors = {n: self._params[n].detach().cpu().contiguous() for n in self.names}
        save_file(tensors, str(Path(directory) / PARTNER_FILE), metadata={"synced_at": str(self.synced_at)})

    @torch.no_grad()
    def load(self, directory: str | os.PathLike) -> None:
        path = Path(directory) / PARTNER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: no {PARTNER_FILE} (a checkpoint of a run without partner: lagged?)")
        from safetensors import safe_open

        tensors = load_file(str(path))
        self.names = self.names or list(tensors)
        missing = set(self.names) - set(tensors) or set(tensors) - set(self._params)
        if missing:
            raise ValueError(f"{path}: its weights do not match the partner's, e.g. {sorted(missing)[0]!r}")
        for name in self.names:
            self._params[name].copy_(tensors[name].to(self._params[name].device, self._params[name].dtype))
        with safe_open(str(path), framework="pt") as f:
            self.synced_at = int((f.metadata() or {}).get("synced_at", 0))
