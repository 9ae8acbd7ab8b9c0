"""Two models' ``p2bot eval`` results on the same held-out turns, compared: per metric, model − compare and
model / compare − 1, with percentile-bootstrap intervals over dialogues (the turns of one dialogue are resampled
together, since they share a persona and a history) and the same resamples for both models (paired).

Each metric is a ratio of sums over dialogues: F1 and Hits@1 are means over turns, PPL is exp(Σ NLL / Σ tokens),
so a resample recomputes them exactly as on the data.
"""

from __future__ import annotations

import math

import torch

from models.scoring.metrics import bootstrap_indices, paired_interval, ratio_of_sums

# key -> (label, the per-example values it is a ratio of: numerator, denominator or None for a per-turn mean)
GOLD_METRICS: dict[str, tuple[str, str, str | None]] = {
    "f1": ("F1 of the generated response (greedy) vs the gold", "f1", None),
    "hits1_nup": ("Hits@1 of the gold response (NUP head)", "hits1_nup", None),
    "hits1_lm": ("Hits@1 of the gold response (LM likelihood)", "hits1_lm", None),
    "ppl": ("perplexity of the gold response", "nll", "tokens"),
}


def dialogue_tallies(per_example: dict[str, list]) -> tuple[list[str], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The dialogues in first-seen order, and per measured metric its (numerator, denominator) summed per dialogue."""
    ids = per_example["dialogue_id"]
    units = list(dict.fromkeys(ids))
    where = torch.tensor([units.index(i) for i in ids]) if ids else torch.zeros(0, dtype=torch.long)
    tallies = {}
    for key, (_, num, den) in GOLD_METRICS.items():
        if num not in per_example:
            continue
        n = torch.zeros(len(units), dtype=torch.float64).index_add_(
            0, where, torch.tensor(per_example[num], dtype=torch.float64))
        d = torch.zeros(len(units), dtype=torch.float64).index_add_(
            0, where, torch.tensor(per_example[den], dtype=torch.float64) if den else torch.ones(len(ids), dtype=torch.float64))
        tallies[key] = (n, d)
    return units, tallies


def _value(key: str, tally: tuple[torch.Tensor, torch.Tensor], idx: torch.Tensor | None = None) -> torch.Tensor:
    v = ratio_of_sums(tally[0], tally[1], idx)
    return torch.exp(v) if key == "ppl" else v


def compare_gold(a: dict[str, list], b: dict[str, list], num_samples: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, dict]:
    """Paired comparison of two ``EvalResult.per_example`` records on the same examples in the same order:
    ``{metric: {"a", "b", "diff", "low", "high", "rel", "rel_low", "rel_high"}}`` for every metric both measured."""
    if a.get("dialogue_id") != b.get("dialogue_id"):
        raise ValueError("the two evaluations were not run on the same examples in the same order (their dialogue "
                         "ids differ): evaluate both with the same data, split, examples_per_dialogue and seed")
    units, ta = dialogue_tallies(a)
    _, tb = dialogue_tallies(b)
    idx = bootstrap_indices(len(units), num_samples, seed)
    out = {}
    for key in GOLD_METRICS:
        if key in ta and key in tb:
            va, vb = _value(key, ta[key]), _value(key, tb[key])
            stats = paired_interval(va, vb, _value(key, ta[key], idx), _value(key, tb[key], idx), confidence)
            out[key] = {"a": float(va), "b": float(vb), **stats}
    return out


def gold_comparison_table(name_a: str, name_b: str, comparison: dict[str, dict], confidence: float = 0.95) -> str:
    """A gold comparison as a Markdown table: both values, a − b and a / b − 1 with their intervals."""
    ci = f"{int(confidence * 100)}% CI"
    lines = [f"| metric | {name_b} | {name_a} | difference ({ci}) | relative ({ci}) |",
             "| --- | --- | --- | --- | --- |"]
    for key, c in comparison.items():
        digits = 2 if key == "ppl" else 4
        rel = "-" if math.isnan(c["rel"]) else (f"{100 * c['rel']:+.1f}% ({100 * c['rel_low']:+.1f} .. "
                                                 f"{100 * c['rel_high']:+.1f})")
        diff = f"{c['diff']:+.{digits}f} ({c['low']:+.{digits}f} .. {c['high']:+.{digits}f})"
        lines.append(f"| {GOLD_METRICS[key][0]} | {c['b']:.{digits}f} | {c['a']:.{digits}f} | {diff} | {rel} |")
    return "\n".join(lines)
