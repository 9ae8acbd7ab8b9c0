"""Dialogue metrics: unigram F1 (ParlAI normalisation), Hits@1 and MRR (one tie rule), perplexity, bootstrap CIs."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import torch

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize_answer(text: str) -> str:
    """ParlAI-style normalisation: lower-case, punctuation → space, drop articles (a/an/the), squeeze whitespace."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def unigram_f1(guess: str, gold: str) -> float:
    """Unigram F1 between normalised token multisets (0 when either side is empty after normalisation)."""
    g, r = normalize_answer(guess).split(), normalize_answer(gold).split()
    common = sum((Counter(g) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(g), common / len(r)
    return 2 * precision * recall / (precision + recall)


def example_ranks(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example, Hits@1 and reciprocal rank of the positive among 1 + K candidates; pos (N,), neg (N, K) → (N,), (N,).

    Ties are broken uniformly at random, in expectation: with g candidates above the positive and t tied with it,
    its rank is uniform on g+1..g+1+t, so Hits@1 = [g = 0]/(t+1) and RR = mean_k 1/(g+1+k), k = 0..t. Counting a
    tie as a miss (or as a hit) would make a scorer that gives many candidates one score (lexical overlap 0, a
    constant model) lose (or gain) by the tie rule alone; the expectation gives it exactly chance, 1/(1+K).
    """
    pos = torch.as_tensor(pos_scores, dtype=torch.float64)
    neg = torch.as_tensor(neg_scores, dtype=torch.float64)
    greater = (neg > pos.unsqueeze(1)).sum(1)  # (N,)
    tied = (neg == pos.unsqueeze(1)).sum(1)  # (N,)
    hits = (greater == 0).float() / (tied + 1)
    rr = [sum(1.0 / (g + 1 + k) for k in range(t + 1)) / (t + 1) for g, t in zip(greater.tolist(), tied.tolist())]
    return hits, torch.tensor(rr, dtype=torch.float)


def ranking_metrics(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> dict[str, float]:
    """Hits@1 and MRR (``example_ranks`` averaged) of the positive among 1 + K candidates; pos (N,), neg (N, K)."""
    hits, rr = example_ranks(pos_scores, neg_scores)
    return {"hits@1": hits.mean().item(), "mrr": rr.mean().item() if len(rr) else 0.0,
            "num_examples": int(pos_scores.numel()),
            "num_candidates": int(neg_scores.shape[1]) + 1 if neg_scores.ndim == 2 else 1}


def hits_at_1(scores: Sequence[float] | torch.Tensor, gold_index: int = 0) -> float:
    """Hits@1 of candidate ``gold_index`` among ``scores`` (one example), ties as in ``example_ranks``."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    others = torch.cat([s[:gold_index], s[gold_index + 1:]])
    return float(example_ranks(s[gold_index:gold_index + 1], others.unsqueeze(0))[0][0])


def perplexity(total_nll: float, num_tokens: int) -> float:
    """``exp(Σ NLL / N)`` over all scored tokens (corpus-level, token-weighted)."""
    if num_tokens <= 0:
        return float("nan")
    return math.exp(total_nll / num_tokens)


def paired_bootstrap(a: Sequence[float] | torch.Tensor, b: Sequence[float] | torch.Tensor, num_samples: int = 2000,
                     seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """Mean of the per-example difference a − b with a percentile bootstrap interval (examples resampled in pairs).

    Returns ``{"diff", "low", "high"}``: the observed mean difference and the ``confidence`` interval's bounds.
    """
    diff = torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)  # (N,)
    if diff.ndim != 1 or diff.numel() == 0:
        raise ValueError("paired_bootstrap needs two equally long, non-empty 1-d sequences")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(diff.numel(), (num_samples, diff.numel()), generator=gen)  # (S, N)
    means = diff[idx].mean(1).sort().values  # (S,)
    tail = (1 - confidence) / 2
    lo, hi = means[int(tail * (num_samples - 1))], means[int(round((1 - tail) * (num_samples - 1)))]
    return {"diff": diff.mean().item(), "low": lo.item(), "high": hi.item()}


def percentile_interval(values: torch.Tensor, confidence: float) -> tuple[float, float]:
    """Percentile interval of (S,) resampled values (NaNs dropped)."""
    v = values[~torch.isnan(values)].sort().values
    if v.numel() == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    return v[int(tail * (v.numel() - 1))].item(), v[int(round((1 - tail) * (v.numel() - 1)))].item()


def ratio_of_sums(num: torch.Tensor, den: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
    """Σ num / Σ den over units (N,), or per resample over ``idx`` (S, N) → (S,); NaN where Σ den = 0."""
    if idx is not None:
        num, den = num[idx], den[idx]  # (S, N)
    n, d = num.sum(-1), den.sum(-1)
    return torch.where(d > 0, n / d.clamp(min=1e-12), torch.full_like(n, float("nan")))


def bootstrap_indices(num_units: int, num_samples: int = 2000, seed: int = 0) -> torch.Tensor:
    """(S, N) unit indices drawn with replacement: one paired resample per row."""
    if num_units < 1:
        raise ValueError("the bootstrap needs at least one unit")
    return torch.randint(num_units, (num_samples, num_units), generator=torch.Generator().manual_seed(seed))


def paired_interval(a: torch.Tensor, b: torch.Tensor, a_boot: torch.Tensor, b_boot: torch.Tensor,
                    confidence: float = 0.95) -> dict[str, float]:
    """Difference a − b and relative change a / b − 1 of two statistics, with percentile bootstrap intervals.

    ``a``, ``b`` are the statistics on the data; ``a_boot``, ``b_boot`` (S,) on the same paired resamples.
    Returns ``{"diff", "low", "high", "rel", "rel_low", "rel_high"}`` (relative terms NaN where b is 0).
    """
    a, b = float(a), float(b)
    diff, rel = a - b, (a / b - 1 if b != 0 else float("nan"))
    lo, hi = percentile_interval(a_boot - b_boot, confidence)
    rel_boot = torch.where(b_boot != 0, a_boot / b_boot - 1, torch.full_like(a_boot, float("nan")))
    rel_lo, rel_hi = percentile_interval(rel_boot, confidence)
    return {"diff": diff, "low": lo, "high": hi, "rel": rel, "rel_low": rel_lo, "rel_high": rel_hi}
