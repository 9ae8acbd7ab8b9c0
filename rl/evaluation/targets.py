"""The four criteria of "did RL help?" on a paired comparison of an RL policy (a) with its SFT start (b), and a
table of several policies (e.g. a recipe's RL seeds and their average) against them.

1. persona perceivability (judge encoder) Hits@1 at least +20% relative, with the interval of the difference above 0;
2. judge PPL up by less than 10%;
3. copy rate no higher than SFT's;
4. echo rate no higher than SFT's.
"""

from __future__ import annotations

from typing import NamedTuple

HITS_GAIN, PPL_RISE = 0.20, 0.10


class Target(NamedTuple):
    name: str
    met: bool | None  # None: the comparison lacks the metric
    shown: str  # the numbers it was decided on


def _rel(c: dict) -> str:
    return f"{100 * c['rel']:+.1f}% ({100 * c['rel_low']:+.1f} .. {100 * c['rel_high']:+.1f})"


def check_targets(comparison: dict[str, dict]) -> list[Target]:
    """The four criteria on ``rl.evaluation.stats.compare(rl, sft)``'s output."""
    out = []
    hits = comparison.get("perceive_hits1")
    out.append(Target("Hits@1 ≥ +20%, CI > 0", None if hits is None else bool(
        hits["rel"] >= HITS_GAIN and hits["low"] > 0), "-" if hits is None else _rel(hits)))
    ppl = comparison.get("judge_ppl")
    out.append(Target("PPL < +10%", None if ppl is None else bool(ppl["rel"] < PPL_RISE),
                      "-" if ppl is None else _rel(ppl)))
    for key, name in (("copy_rate", "copy ≤ SFT"), ("echo_rate", "echo ≤ SFT")):
        c = comparison.get(key)
        out.append(Target(name, None if c is None else bool(c["a"] <= c["b"]),
                          "-" if c is None else f"{c['a']:.3f} vs {c['b']:.3f}"))
    return out


def targets_table(comparisons: dict[str, dict[str, dict]]) -> str:
    """One row per policy (``{label: comparison against SFT}``): each criterion's numbers and verdict, and the
    number met."""
    names = [t.name for t in check_targets({})]
    lines = ["| policy | " + " | ".join(names) + " | met |", "|---|" + "---|" * (len(names) + 1)]
    for label, comparison in comparisons.items():
        targets = check_targets(comparison)
        cells = [f"{t.shown}: {'met' if t.met else 'not met' if t.met is not None else '-'}" for t in targets]
        met = sum(bool(t.met) for t in targets)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {met} of {len(targets)} |")
    return "\n".join(lines)
