"""Weight averaging of policies fine-tuned from one start model (a "model soup" of RL runs).

RL runs that differ only in their seed end in different places: one learns short generic turns, another long ones,
a third restates its persona. Fine-tuned from the same start, their weights stay in one linearly connected basin,
and their average keeps what the runs share while the seed-specific drifts partly cancel (Ramé et al., WARP, 2024;
Wortsman et al., model soups, 2022). ``average_transmitters`` averages every parameter and buffer of the LM and the
heads, one model in memory at a time besides the running sum. LoRA policies are merged into their base first (the
average of two adapters' A and B factors is not the average of their updates), so the result is a full model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

from models.networks.transmitter import Transmitter


def _full_state(model: Transmitter) -> dict[str, torch.Tensor]:
    if model.is_peft:
        model.lm = model.lm.merge_and_unload()
    return {k: v.detach() for k, v in model.state_dict().items()}


def average_transmitters(paths: Sequence[str | os.PathLike], weights: Sequence[float] | None = None, *,
                         loader: Callable[[str], Transmitter] | None = None) -> Transmitter:
    """The weighted average (uniform by default) of the Transmitters at ``paths``, as a Transmitter.

    The first model is the template (config, tokenizer, heads layout, card). Raises ``ValueError`` when fewer than two
    paths are given, when ``weights`` do not match them or do not sum to a positive number, or when two models differ
    in a parameter's name, shape or dtype (another architecture or another start cannot be averaged).
    """
    paths = [str(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two models, got {len(paths)}")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths):
        raise ValueError(f"{len(weights)} weights for {len(paths)} models")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights {weights}: must be >= 0 with a positive sum")
    load = loader or (lambda p: Transmitter.from_pretrained(p, device="cpu"))
    total = sum(weights)
    template = load(paths[0])
    state = _full_state(template)
    sums = {k: v.float() * (weights[0] / total) if v.is_floating_point() else v.clone() for k, v in state.items()}
    for path, w in zip(paths[1:], weights[1:]):
        other = _full_state(load(path))
        if set(other) != set(state):
            diff = sorted(set(other) ^ set(state))
            raise ValueError(f"{path}: its parameters differ from {paths[0]}'s ({len(diff)} names, first {diff[0]!r}); "
                             "only models of one architecture can be averaged")
        for k, v in other.items():
            if v.shape != state[k].shape or v.dtype != state[k].dtype:
                raise ValueError(f"{path}: parameter {k!r} is {tuple(v.shape)} {v.dtype}, {paths[0]} has "
                                 f"{tuple(state[k].shape)} {state[k].dtype}")
            if v.is_floating_point():
                sums[k] += v.float() * (w / total)
        del other
    template.load_state_dict({k: v.to(state[k].dtype) for k, v in sums.items()})
    return template
