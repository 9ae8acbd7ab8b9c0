"""Statistics of a self-play evaluation: per-model values with bootstrap intervals, paired model comparisons, tables.

Every metric is a ratio of sums over persona pairs (Σ num / Σ den), optionally transformed (PPL = exp(NLL/token)),
so it can be recomputed on any resample of pairs. Intervals are percentile bootstraps over pairs; a comparison
resamples the same pairs for both models (paired), so pair difficulty cancels out. Distinct-n is counted within
each pair (all its dialogues, both speakers): corpus-level distinct-n is not a sum over pairs (a resample that
repeats a pair repeats its n-grams), so it is reported as a point value only (``corpus_distinct``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.scoring.metrics import bootstrap_indices, paired_interval, percentile_interval, ratio_of_sums
from rl.evaluation.play import ModelEval


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    tally: str | None = None  # the tally it is computed from (default: key)
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    better: str = ""  # "higher", "lower" or "" (no direction)


METRICS: tuple[Metric, ...] = (
    Metric("perceive_hits1", "persona perceivability Hits@1 (judge encoder)", better="higher"),
    Metric("perceive_mrr", "persona perceivability MRR (judge encoder)", better="higher"),
    Metric("perceive_hits1_unseen", "Hits@1 (judge encoder), speakers whose persona training never saw", better="higher"),
    Metric("perceive_mrr_unseen", "MRR (judge encoder), speakers whose persona training never saw", better="higher"),
    Metric("lexical_hits1", "persona perceivability Hits@1 (TF-IDF words, model-free)", better="higher"),
    Metric("lexical_mrr", "persona perceivability MRR (TF-IDF words, model-free)", better="higher"),
    Metric("lm_persona_hits1", "persona perceivability Hits@1 (judge LM, persona likelihood)", better="higher"),
    Metric("lm_persona_mrr", "persona perceivability MRR (judge LM, persona likelihood)", better="higher"),
    Metric("receiver_hits1", "Hits@1 by the trained Receiver (RL's reward: not independent)"),
    Metric("receiver_mrr", "MRR by the trained Receiver (RL's reward: not independent)"),
    Metric("fact_coverage", "persona fact coverage", better="higher"),
    Metric("copy_rate", "copy rate (≥80% of a persona sentence)", better="lower"),
    Metric("echo_rate", "echo rate (near-copy of partner's last line)", better="lower"),
    Metric("judge_nll", "judge NLL (nats/token)", better="lower"),
    Metric("judge_ppl", "judge PPL", tally="judge_nll", transform=torch.exp, better="lower"),
    Metric("contradiction_persona", "contradicts own persona (NLI)", better="lower"),
    Metric("contradiction_history", "contradicts own earlier turn (NLI)", better="lower"),
    Metric("distinct_1", "distinct-1 (within a pair's dialogues)", better="higher"),
    Metric("distinct_2", "distinct-2 (within a pair's dialogues)", better="higher"),
    Metric("self_repeat_rate", "self-repetition (near-copy of an own earlier turn)", better="lower"),
    Metric("intra_repeat", "repeated trigrams within an utterance", better="lower"),
    Metric("mean_words", "mean words per utterance"),
    Metric("empty_rate", "empty turns", better="lower"),
    Metric("cutoff_rate", "cut-off turns (no end marker)", better="lower"),
)
BY_KEY = {m.key: m for m in METRICS}


def corpus_distinct(ev: ModelEval) -> dict[str, float]:
    """Distinct-1/2 over every judged utterance of the model (point values)."""
    out = {}
    for n, units in ev.ngrams.items():
        grams = [g for unit in units for g in unit]
        out[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else float("nan")
    return out


def metric_values(ev: ModelEval, metric: Metric, idx: torch.Tensor | None = None) -> torch.Tensor | None:
    """The metric on the data (idx None → a scalar tensor) or per resample (idx (S, N) → (S,)); None if not measured."""
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
        stats = paired_interval(va, vb, metric_values(a, m, idx), metric_values(b, m, idx), confidence)
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
