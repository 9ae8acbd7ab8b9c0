"""The report of a ``p2bot recipe`` run: ``report.md`` (stage times, the evaluation, every policy on the targets of
``rl.evaluation.targets``, the held-out gold turns, the reward components per RL run) and ``recipe_results.json``
(the same numbers for a results page: per policy its comparisons with SFT, KL and seconds per iteration, and the
reward trends)."""

from __future__ import annotations

import json
from pathlib import Path

from data_prep.files.atomic import write_text_atomic


def _comparisons(files: dict[str, Path]) -> dict[str, dict]:
    """``{policy: comparison against SFT}`` of the evaluations that finished."""
    return {name: json.loads(path.read_text())["comparison"] for name, path in files.items() if path.is_file()}


def write_report(out: Path, title: str, timings: dict, wall: dict, *, selfplay: dict[str, Path],
                 gold: dict[str, Path], runs: dict[str, Path], per_seed: bool, start: int,
                 provenance: dict) -> Path | None:
    """Write both files once the recipe's self-play evaluation has run; returns ``report.md`` (None before).

    Args:
        selfplay, gold: ``{policy: results file}`` of the self-play and gold-turn evaluations (the recipe's policy
            first, then each seed's).
        runs: ``{run: metrics.jsonl}`` of the RL runs, named as the policies they trained.
        per_seed: whether the self-play targets get a table of their own (several seeds).
        start: the first iteration of the reward trends (the recipe's ``curriculum_steps``).
    """
    table = out / "eval" / "selfplay_table.md"
    if not table.is_file():
        return None
    from launch.report import read_metrics, reward_trends, run_costs, trend_means
    from models.scoring.gold_compare import gold_comparison_table
    from rl.evaluation.targets import check_gold_targets, targets_table

    report = (f"# {title}\n\nStage times (s): {timings}; wall clock (s): {wall} (total {sum(wall.values()) / 60:.1f} "
              f"min)\n\n## Evaluation (p2bot eval --selfplay)\n\n" + table.read_text())
    sp, gd = _comparisons(selfplay), _comparisons(gold)
    if per_seed:
        report += "\n## Each RL seed and the average against SFT (the four targets)\n\n" + targets_table(sp) + "\n"
    if gd:
        first = next(iter(gd))
        report += (f"\n## Held-out turns: F1, Hits@1, gold PPL (p2bot eval, {first} vs SFT)\n\n"
                   + gold_comparison_table(first, "SFT", gd[first]) + "\n\n"
                   + targets_table(gd, check=check_gold_targets) + "\n")
    metrics = {name: read_metrics(path) for name, path in runs.items() if path.is_file()}
    trends = reward_trends(metrics, out / "report", start=start)
    if trends:
        report += "\n## Reward components per RL run\n\n" + trends
    (out / "report.md").write_text(report)
    policies = {name: {"selfplay": sp.get(name), "gold": gd.get(name),
                       **run_costs(metrics.get("rl" if name == "policy" else name, []))}
                for name in dict.fromkeys([*sp, *gd])}
    write_text_atomic(out / "recipe_results.json", json.dumps({
        "config": title, "policies": policies, "reward_trends": {"start": start, "window": 5,
                                                                 "means": trend_means(metrics, start)},
        "provenance": provenance}, indent=2, allow_nan=True) + "\n")
    return out / "report.md"
