"""The four criteria of "did RL help?" on a paired comparison of an RL policy (a) with its SFT start (b), and a
table of several policies (e.g. a recipe's RL seeds and their average) against them.

1. persona perceivability (judge encoder) Hits@1 at least +20% relative, with the interval of the difference above 0;
2. judge PPL up by less than 10%;
3. copy rate no higher than SFT's;
4. echo rate no higher than SFT's.

On held-out gold turns (``p2bot eval``, the seed paper's metrics: ``models.scoring.gold_compare``), RL is held to
three more: F1 at most 1 point (0.01) lower, gold-response PPL up by at most 5%, Hits@1 of the NUP head not lower.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

HITS_GAIN, PPL_RISE = 0.20, 0.10
GOLD_F1_DROP, GOLD_PPL_RISE = 0.01, 0.05


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


def check_gold_targets(comparison: dict[str, dict]) -> list[Target]:
    """The three criteria on held-out gold turns, on ``models.scoring.gold_compare.compare_gold(rl, sft)``'s output."""
    f1, ppl, hits = (comparison.get(k) for k in ("f1", "ppl", "hits1_nup"))
    return [
        Target("F1 ≥ SFT − 0.01", None if f1 is None else bool(f1["diff"] >= -GOLD_F1_DROP),
               "-" if f1 is None else f"{f1['diff']:+.4f} ({f1['low']:+.4f} .. {f1['high']:+.4f})"),
        Target("gold PPL ≤ +5%", None if ppl is None else bool(ppl["rel"] <= GOLD_PPL_RISE),
               "-" if ppl is None else _rel(ppl)),
        Target("Hits@1 (NUP) ≥ SFT", None if hits is None else bool(hits["a"] >= hits["b"]),
               "-" if hits is None else f"{hits['a']:.3f} vs {hits['b']:.3f}"),
    ]


def targets_table(comparisons: dict[str, dict[str, dict]],
                  check: Callable[[dict[str, dict]], list[Target]] = check_targets) -> str:
    """One row per policy (``{label: comparison against SFT}``): each criterion of ``check`` with its numbers and
    verdict, and the number met."""
    names = [t.name for t in check({})]
    lines = ["| policy | " + " | ".join(names) + " | met |", "|---|" + "---|" * (len(names) + 1)]
    for label, comparison in comparisons.items():
        targets = check(comparison)
        cells = [f"{t.shown}: {'met' if t.met else 'not met' if t.met is not None else '-'}" for t in targets]
        met = sum(bool(t.met) for t in targets)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {met} of {len(targets)} |")
    return "\n".join(lines)
