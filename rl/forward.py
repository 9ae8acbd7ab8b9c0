"""One forward of a policy over an ``Experience``: log-probs, entropy, values and logits of the trained tokens; and
the reference log-probs read from what a frozen scorer of the same model already computed."""

from __future__ import annotations

from typing import NamedTuple

import torch
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from rl.experience import Experience, trim_left


class PolicyOutput(NamedTuple):
    """What the update's losses read off one forward; the optional parts are None when not asked for."""

    logprobs: torch.Tensor  # (B, R)
    entropy: torch.Tensor | None  # (B, R)
    values: torch.Tensor | None  # (B, R)
    logits: torch.Tensor | None  # (B, R, V)


def autocast(enabled: bool, device) -> torch.autocast:
    """bfloat16 autocast on ``device`` when ``enabled`` (``PPOConfig.bf16``); parameters stay in their own dtype."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


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


def _memo_row(memo, exp: Experience, b: int) -> torch.Tensor | None:
    """Row ``b``'s trained-token log-probs from ``memo`` (0 where the row has no weight), or None if any is missing."""
    mask = exp.attention_mask[b].bool()
    seq = exp.input_ids[b, mask].tolist()  # a row's tokens are contiguous; left padding before them
    first = int(mask.nonzero()[0])
    pos = (exp.response_index[b] + 1 - first).tolist()  # each trained token's position in ``seq``
    want = (exp.response_mask[b] > 0).tolist()
    row = torch.zeros(len(pos))
    j = 0
    while j < len(pos):
        if not want[j]:
            j += 1
            continue
        k = j  # [j, k] is one run of consecutive positions: one turn's response
        while k + 1 < len(pos) and want[k + 1] and pos[k + 1] == pos[k] + 1:
            k += 1
        logprobs = memo.lookup(seq, pos[j], pos[k] + 1)
        if logprobs is None:
            return None
        row[j:k + 1] = logprobs
        j = k + 1
    return row


def memo_or_forward(memo, exp: Experience, forward) -> torch.Tensor:
    """``forward(exp)``'s (B, R) trained-token log-probs, read from ``memo`` (a ``LogprobMemo`` filled by the same
    frozen model) for every row it covers; ``forward`` runs on the other rows only.

    Rows sampled at a temperature other than 1 always run (the memo holds the untempered distribution's log-probs).
    Positions without weight (``response_mask`` 0) of a memo row are 0.
    """
    if memo is None or not len(memo):
        return forward(exp)
    out = torch.zeros(exp.response_ids.shape)
    missing = []
    for b in range(len(exp)):
        row = _memo_row(memo, exp, b) if float(exp.temperature[b]) == 1.0 else None
        if row is None:
            missing.append(b)
        else:
            out[b] = row
    out = out.to(exp.response_mask.device)
    if missing:
        idx = torch.tensor(missing, device=exp.input_ids.device)
        out[idx] = forward(trim_left(exp.select(idx))).float()
    return out
