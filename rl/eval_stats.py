"""Statistics of a self-play evaluation: per-model values with bootstrap intervals, paired model comparisons, tables.

Every metric is a ratio of sums over persona pairs (Σ num / Σ den), optionally transformed (PPL = exp(NLL/token));
distinct-n is recomputed on each resample. Intervals are percentile bootstraps over pairs (basic bootstrap for
distinct-n); a comparison resamples the same pairs for both models (paired), so pair difficulty cancels out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.metrics import bootstrap_indices, paired_interval, percentile_interval, ratio_of_sums
from rl.evaluation import ModelEval


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    tally: str | None = None  # the tally it is computed from (default: key); None for distinct-n
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    better: str = ""  # "higher", "lower" or "" (no direction)
    interval: str = "percentile"  # or "basic" (2·estimate − percentiles: for statistics a resample biases)


METRICS: tuple[Metric, ...] = (
    Metric("perceive_hits1", "persona perceivability Hits@1 (judge encoder)", better="higher"),
    Metric("perceive_mrr", "persona perceivability MRR (judge encoder)", better="higher"),
    Metric("receiver_hits1", "Hits@1 by the trained Receiver (RL's reward: not independent)"),
    Metric("receiver_mrr", "MRR by the trained Receiver (RL's reward: not independent)"),
    Metric("fact_coverage", "persona fact coverage", better="higher"),
    Metric("copy_rate", "copy rate (≥80% of a persona sentence)", better="lower"),
    Metric("echo_rate", "echo rate (near-copy of partner's last line)", better="lower"),
    Metric("judge_nll", "judge NLL (nats/token)", better="lower"),
    Metric("judge_ppl", "judge PPL", tally="judge_nll", transform=torch.exp, better="lower"),
    Metric("contradiction_persona", "contradicts own persona (NLI)", better="lower"),
    Metric("contradiction_history", "contradicts own earlier turn (NLI)", better="lower"),
    # a resample repeats pairs, which lowers distinct-n: the basic interval corrects that bias to first order
    Metric("distinct_1", "distinct-1", tally=None, better="higher", interval="basic"),
    Metric("distinct_2", "distinct-2", tally=None, better="higher", interval="basic"),
    Metric("self_repeat_rate", "self-repetition (near-copy of an own earlier turn)", better="lower"),
    Metric("intra_repeat", "repeated trigrams within an utterance", better="lower"),
    Metric("mean_words", "mean words per utterance"),
    Metric("empty_rate", "empty turns", better="lower"),
    Metric("cutoff_rate", "cut-off turns (no end marker)", better="lower"),
)
BY_KEY = {m.key: m for m in METRICS}


def _distinct(grams: list[list[tuple]], idx: torch.Tensor | None) -> torch.Tensor:
    """Distinct-n over the units in ``idx`` (S, N) → (S,), or over all units → ()."""
    vocab: dict[tuple, int] = {}
    ids = [torch.tensor([vocab.setdefault(g, len(vocab)) for g in unit], dtype=torch.long) for unit in grams]

    def one(rows) -> float:
        cat = torch.cat([ids[i] for i in rows]) if len(rows) else torch.empty(0, dtype=torch.long)
        return cat.unique().numel() / cat.numel() if cat.numel() else float("nan")

    if idx is None:
        return torch.tensor(one(range(len(ids))), dtype=torch.float64)
    return torch.tensor([one(row.tolist()) for row in idx], dtype=torch.float64)


def metric_values(ev: ModelEval, metric: Metric, idx: torch.Tensor | None = None) -> torch.Tensor | None:
    """The metric on the data (idx None → a scalar tensor) or per resample (idx (S, N) → (S,)); None if not measured."""
    if metric.tally is None and metric.key.startswith("distinct_"):
        return _distinct(ev.ngrams[int(metric.key.rsplit("_", 1)[1])], idx)
    tally = ev.tallies.get(metric.tally or metric.key)
    if tally is None or float(tally[1].sum()) == 0:
        return None
    v = ratio_of_sums(tally[0], tally[1], idx)
    return metric.transform(v) if metric.transform is not None else v


def summarize(ev: ModelEval, num_samples: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict[str, dict]:
    """``{metric: {"value", "low", "high"}}`` for every measured metric (bootstrap over pairs)."""
    idx = bootstrap_indices(len(ev.units), num_samples, seed)
    out = {}
    for m in METRICS:
        value = metric_values(ev, m)
        if value is None:
            continue
        low, high = percentile_interval(metric_values(ev, m, idx), confidence)
        if m.interval == "basic":
            low, high = 2 * float(value) - high, 2 * float(value) - low
        out[m.key] = {"value": float(value), "low": low, "high": high}
    return out


def compare(a: ModelEval, b: ModelEval, num_samples: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict[str, dict]:
    """Paired comparison a − b for every metric both measured: ``{"a", "b", "diff", "low", "high", "rel", ...}``."""
    if a.units != b.units:
        raise ValueError(f"{a.name} and {b.name} were not evaluated on the same persona pairs in the same order")
    idx = bootstrap_indices(len(a.units), num_samples, seed)
    out = {}
    for m in METRICS:
        va, vb = metric_values(a, m), metric_values(b, m)
        if va is None or vb is None:
            continue
        stats = paired_interval(va, vb, metric_values(a, m, idx), metric_values(b, m, idx), confidence,
                                basic=m.interval == "basic")
        out[m.key] = {"a": float(va), "b": float(vb), **stats}
    return out


def _fmt(v: float, key: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.2f}" if key in ("judge_ppl", "judge_nll", "mean_words") else f"{v:.3f}"


def summary_table(name: str, summary: dict[str, dict], confidence: float = 0.95) -> str:
    """One model's metrics as a Markdown table."""
    lines = [f"| metric | {name} | {int(confidence * 100)}% CI |", "| --- | --- | --- |"]
    for key, s in summary.items():
        lines.append(f"| {BY_KEY[key].label} | {_fmt(s['value'], key)} | {_fmt(s['low'], key)} .. {_fmt(s['high'], key)} |")
    return "\n".join(lines)


def comparison_table(name_a: str, name_b: str, comparison: dict[str, dict], confidence: float = 0.95) -> str:
    """A paired comparison as a Markdown table: both values, a − b and a / b − 1 with their intervals."""
    ci = f"{int(confidence * 100)}% CI"
    lines = [f"| metric | {name_b} | {name_a} | difference ({ci}) | relative ({ci}) |", "| --- | --- | --- | --- | --- |"]
    for key, c in comparison.items():
        rel = "-" if math.isnan(c["rel"]) else (f"{100 * c['rel']:+.1f}% ({100 * c['rel_low']:+.1f} .. "
                                                 f"{100 * c['rel_high']:+.1f})")
        diff = f"{c['diff']:+.3f} ({c['low']:+.3f} .. {c['high']:+.3f})"
        lines.append(f"| {BY_KEY[key].label} | {_fmt(c['b'], key)} | {_fmt(c['a'], key)} | {diff} | {rel} |")
    return "\n".join(lines)


def samples_markdown(evals: list[ModelEval], num_dialogues: int = 4) -> str:
    """The first ``num_dialogues`` dialogues of every model, grouped by dialogue (same pair, same seed)."""
    by_model = [{pd.dialogue.dialogue_id: pd for pd in ev.dialogues} for ev in evals]
    lines = []
    for pd in evals[0].dialogues[:num_dialogues]:
        d = pd.dialogue
        lines += [f"## Dialogue {d.dialogue_id}", f"A persona: {' '.join(d.persona_a)}", f"B persona: {' '.join(d.persona_b)}", ""]
        for ev, dialogues in zip(evals, by_model):
            other = dialogues.get(d.dialogue_id)
            if other is None:
                continue
            lines.append(f"### {ev.name}")
            lines += [f"{s}: {t}{' [cut off]' if cut else ''}" for s, t, cut in
                      zip(other.dialogue.speakers, other.dialogue.turns, other.cut_off)] + [""]
    return "\n".join(lines)
