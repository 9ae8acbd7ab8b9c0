"""``p2bot bench options --task toy``: every variant runs from the same start on the same budget and is tabulated."""

import json
import math

from launch.bench_rl_options import VARIANTS, _slug, table
from launch.cli import main


def mean(values):
    return sum(values) / len(values)


def test_bench_options_runs_each_variant_and_tabulates(tmp_path, capsys):
    # grpo is the variant whose score rises every iteration on this task (README: 0.049 -> 0.153 in 12); after 6
    # iterations its gain was +0.038 (seed 0) and +0.031 (seed 1), against about 0.01 of noise in a mean of 3
    variants = ["grpo", "ppo, speaker, turn_gae"]
    rc = main(["bench", "options", "--task", "toy", "--max_steps", "6", "--seed", "0", "--variants", *variants,
               "--output_dir", str(tmp_path)])
    assert rc == 0
    result = json.loads((tmp_path / "bench_options.json").read_text())
    assert list(result["variants"]) == variants
    for name, row in result["variants"].items():
        assert row["iterations"] == 6 and row["s_per_iteration"] > 0 and row["peak_rss_mb"] > 100
        metrics = [json.loads(line) for line in (tmp_path / "runs" / _slug(name) / "metrics.jsonl").read_text().splitlines()]
        scores, kls = [m["objective/scores"] for m in metrics], [m["objective/kl"] for m in metrics]
        assert len(metrics) == 6 and all(map(math.isfinite, scores + kls)), name
        # the gain is the run's own last 3 iterations over its first 3 (the measured baseline of the same run)
        assert row["reward_gain"] == mean(scores[-3:]) - mean(scores[:3]), name
        assert row["kl"] == mean(kls[-3:]), name
        assert kls[0] == 0.0, name  # the first rollout is sampled by the reference itself
    grpo = result["variants"]["grpo"]
    assert grpo["reward_gain"] > 0.01  # trained: the letter rate rises above its first iterations'
    # the k1 estimator is not non-negative sample by sample, but averaged over the policy's own samples it estimates
    # KL(policy || reference) >= 0: a policy that moved this far is measured as having moved
    assert grpo["kl"] > 0
    printed = capsys.readouterr().out
    assert "| grpo |" in printed and "| variant | reward gain |" in printed
    assert f"| grpo | {grpo['reward_gain']:+.3f} | {grpo['kl']:.2f} |" in printed
    assert table(result).count("\n") == 1 + len(variants)


def test_bench_options_rejects_unknown_variants(tmp_path, capsys):
    assert main(["bench", "options", "--variants", "a2c", "--output_dir", str(tmp_path)]) == 2
    assert "a2c" in capsys.readouterr().err and len(VARIANTS) == 10
