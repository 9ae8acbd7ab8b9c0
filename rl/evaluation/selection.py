"""Checkpoint selection: of the checkpoints of one run, the one to ship, chosen on validation pairs under guards.

A policy pushed on a reward improves the judged quantity for a while, then may buy more of it with a hack (restating
its persona, echoing, drifting from fluent text); where that happens differs from seed to seed. Every candidate is
compared, paired on the same validation persona pairs and seeds, with the run's start model (the *baseline*, e.g. the
SFT model). A candidate is *eligible* when it beats the baseline on ``metric`` by more than ``min_gain`` (relative)
and keeps every guard: judge PPL at most ``max_ppl_increase`` above the baseline's, and each
``no_higher_than_baseline`` metric (copy and echo rates by default) at most the baseline's. The chosen candidate is
the eligible one with the highest ``metric`` (ties: the earlier one, closer to the start). The validation pairs must
be disjoint from the pairs any reported result is measured on: choosing on the test pairs would make the test a
selection (``p2bot recipe`` enforces this). They also need as many dialogues as the evaluation: on 100 pairs × 1
dialogue, random streams alone moved the start model's judge Hits@1 by ±0.05 (README). See DESIGN.md §10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rl.evaluation.stats import BY_KEY


@dataclass
class SelectionRule:
    metric: str = "perceive_hits1"  # maximised among the eligible candidates
    min_gain: float = 0.0  # eligible only if metric / baseline's − 1 exceeds this (a candidate no better is no choice)
    max_ppl_increase: float | None = 0.10  # judge PPL / baseline's − 1 at most this (None: no PPL guard)
    no_higher_than_baseline: tuple[str, ...] = ("copy_rate", "echo_rate")

    def __post_init__(self):
        self.no_higher_than_baseline = tuple(self.no_higher_than_baseline)
        for key in (self.metric, *self.no_higher_than_baseline):
            if key not in BY_KEY:
                raise ValueError(f"selection: unknown metric {key!r} (expected one of {sorted(BY_KEY)})")
        if BY_KEY[self.metric].better != "higher":
            raise ValueError(f"selection: metric {self.metric!r} is not one that is better higher")
        if self.min_gain < 0:
            raise ValueError(f"selection: min_gain={self.min_gain} must be >= 0 (a candidate worse than the baseline "
                             "is no choice)")
        if self.max_ppl_increase is not None and self.max_ppl_increase < 0:
            raise ValueError(f"selection: max_ppl_increase={self.max_ppl_increase} must be >= 0 (or None)")


@dataclass
class Candidate:
    """One candidate's paired comparison with the baseline (``rl.evaluation.stats.compare(candidate, baseline)``)."""

    name: str
    comparison: dict[str, dict]
    value: float = math.nan
    violations: list[str] = field(default_factory=list)

    @property
    def eligible(self) -> bool:
        return not self.violations


def check(name: str, comparison: dict[str, dict], rule: SelectionRule) -> Candidate:
    """The candidate's metric value and every guard it breaks (a guard whose metric was not measured is an error)."""
    needed = [rule.metric, *rule.no_higher_than_baseline] + (["judge_ppl"] if rule.max_ppl_increase is not None else [])
    missing = [k for k in needed if k not in comparison]
    if missing:
        raise ValueError(f"selection: {name} has no {missing} (a judge was skipped? judge_ppl needs --judge_lm)")
    violations = []
    m = comparison[rule.metric]
    gained = m["a"] > m["b"] if m["b"] == 0 else m["rel"] > rule.min_gain  # a baseline of 0 has no relative change
    if not gained:
        violations.append(f"{rule.metric} {m['a']:.3f} vs baseline {m['b']:.3f} (needs more than "
                          f"{100 * rule.min_gain:+.0f}%)")
    if rule.max_ppl_increase is not None:
        c = comparison["judge_ppl"]
        if c["rel"] > rule.max_ppl_increase:
            violations.append(f"judge PPL {c['a']:.2f} is {100 * c['rel']:+.1f}% vs baseline {c['b']:.2f} "
                              f"(allowed {100 * rule.max_ppl_increase:+.0f}%)")
    for key in rule.no_higher_than_baseline:
        c = comparison[key]
        if c["a"] > c["b"]:
            violations.append(f"{key} {c['a']:.3f} > baseline {c['b']:.3f}")
    return Candidate(name, comparison, float(comparison[rule.metric]["a"]), violations)


def choose(candidates: list[Candidate]) -> Candidate | None:
    """The eligible candidate with the highest value, the earliest on ties; None when none is eligible."""
    best = None
    for c in candidates:
        if c.eligible and (best is None or c.value > best.value):
            best = c
    return best


def selection_table(candidates: list[Candidate], chosen: Candidate | None, rule: SelectionRule) -> str:
    """The candidates as a Markdown table: metric vs baseline, guards, and which one was chosen."""
    guards = (["judge_ppl"] if rule.max_ppl_increase is not None else []) + list(rule.no_higher_than_baseline)
    head = [f"{rule.metric} (baseline → candidate, relative)"] + [f"{g} (baseline → candidate)" for g in guards]
    lines = ["| candidate | " + " | ".join(head) + " | eligible |", "| --- |" + " --- |" * (len(head) + 1)]
    for c in candidates:
        m = c.comparison[rule.metric]
        cells = [f"{m['b']:.3f} → {m['a']:.3f} ({100 * m['rel']:+.1f}%)"]
        cells += [f"{c.comparison[g]['b']:.3f} → {c.comparison[g]['a']:.3f}" for g in guards]
        mark = "**chosen**" if c is chosen else ("yes" if c.eligible else "no: " + "; ".join(c.violations))
        lines.append(f"| {c.name} | " + " | ".join(cells) + f" | {mark} |")
    return "\n".join(lines)
