"""One forward of a policy over an ``Experience``: log-probs, entropy, values and logits of the trained tokens."""

from __future__ import annotations

from typing import NamedTuple

import torch
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from rl.experience import Experience


class PolicyOutput(NamedTuple):
    """What the update's losses read off one forward; the optional parts are None when not asked for."""

    logprobs: torch.Tensor  # (B, R)
    entropy: torch.Tensor | None  # (B, R)
    values: torch.Tensor | None  # (B, R)
    logits: torch.Tensor | None  # (B, R, V)


def policy_forward(model, exp: Experience, with_values: bool, with_entropy: bool = False, entropy_grad: bool = True,
                   with_logits: bool = False) -> PolicyOutput:
    """The trained tokens' log-probs, and their entropy, values and logits when asked for.

    The LM head runs only at ``exp.response_index``; log-probs, entropy and logits are of ``logits / temperature``,
    the distribution each row was sampled from. ``entropy_grad=False`` computes the entropy without gradients (a
    logged statistic only).
    """
    B, R = exp.response_ids.shape
    out = model(input_ids=exp.input_ids, attention_mask=exp.attention_mask, with_values=with_values,
                logits_to_keep=exp.response_index)
    V = out.logits.shape[-1]
    logits = out.logits.float() / exp.temperature.to(out.logits.device)[:, None, None]  # (B, R, V)
    # one flat row: TRL's helper loops over the first dimension, which is slow on CPU for (B, R, V)
    logprobs = selective_log_softmax(logits.reshape(1, B * R, V), exp.response_ids.reshape(1, B * R)).reshape(B, R)
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(torch.is_grad_enabled() and entropy_grad):
            entropy = entropy_from_logits(logits)  # (B, R)
    values = out.values.gather(1, exp.response_index).float() if with_values else None  # (B, R)
    return PolicyOutput(logprobs, entropy, values, logits if with_logits else None)
