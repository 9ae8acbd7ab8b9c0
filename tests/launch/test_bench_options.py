"""``p2bot bench options --task toy``: every variant runs from the same start on the same budget and is tabulated."""

import json

from launch.bench_rl_options import VARIANTS, table
from launch.cli import main


def test_bench_options_runs_each_variant_and_tabulates(tmp_path, capsys):
    variants = ["ppo, speaker, turn_gae", "rloo"]
    rc = main(["bench", "options", "--task", "toy", "--max_steps", "6", "--variants", *variants,
               "--output_dir", str(tmp_path)])
    assert rc == 0
    result = json.loads((tmp_path / "bench_options.json").read_text())
    assert list(result["variants"]) == variants
    for row in result["variants"].values():
        assert row["iterations"] == 6 and row["s_per_iteration"] > 0 and row["peak_rss_mb"] > 100
        assert row["kl"] >= 0 or row["kl"] < 0  # a number (NaN fails this)
    printed = capsys.readouterr().out
    assert "| rloo |" in printed and "| variant | reward gain |" in printed
    assert table(result).count("\n") == 1 + len(variants)


def test_bench_options_rejects_unknown_variants(tmp_path, capsys):
    assert main(["bench", "options", "--variants", "a2c", "--output_dir", str(tmp_path)]) == 2
    assert "a2c" in capsys.readouterr().err and len(VARIANTS) == 10
