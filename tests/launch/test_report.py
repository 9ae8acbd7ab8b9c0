import json

from launch.report import markdown_table, plot_metrics, read_metrics, series


def _rows():
    return [
        {"step": s, "reward/persona": 0.1 * s, "reward/fluency": -2.0 + 0.01 * s, "objective/kl": 0.02 * s,
         "policy/entropy": 3.0 - 0.1 * s, "loss/policy": float("nan") if s == 2 else 0.5}
        for s in range(1, 6)
    ]


def test_series_skips_missing_and_non_finite():
    xs, ys = series(_rows(), "loss/policy")
    assert xs == [1, 3, 4, 5] and ys == [0.5] * 4
    assert series(_rows(), "nope") == ([], [])


def test_plots_are_written_as_png(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _rows()) + "\n")
    written = plot_metrics(read_metrics(path), tmp_path / "plots")
    assert sorted(p.name for p in written) == ["entropy.png", "kl.png", "losses.png", "rewards.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_markdown_table():
    text = markdown_table({"before": {"f1": 0.12345, "ppl": 20.0}, "after": {"f1": 0.2}}, ["f1", "ppl"])
    assert text.splitlines()[2] == "| before | 0.1235 | 20 |"
    assert text.splitlines()[3] == "| after | 0.2 | - |"


def test_read_metrics_survives_a_torn_line_and_keeps_one_row_per_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 0, "x": 1.0}, {"step": 1, "x": 2.0}, {"step": 1, "x": 3.0}]  # step 1 logged twice (old runs)
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 2, "x"')  # killed mid-line
    assert read_metrics(path) == [{"step": 0, "x": 1.0}, {"step": 1, "x": 3.0}]


def test_reward_trends_per_run_plots_and_first_last_means(tmp_path):
    from launch.report import reward_trends

    seed0 = [{"step": s, "reward/persona": float(s), "reward/fluency": -1.0} for s in range(10)]
    seed1 = [{"step": s, "reward/persona": 10.0 - s, "objective/kl": 0.1} for s in range(10)]
    text = reward_trends({"seed0": seed0, "seed1": seed1}, tmp_path / "report", start=2, window=3)
    assert "| run | fluency first → last | persona first → last |" in text
    assert "| seed0 | -1 → -1 | 3 → 8 |" in text  # persona: mean of steps 2-4, then of 7-9
    assert "| seed1 | - | 7 → 2 |" in text  # seed1 logged no fluency
    for name in ("reward_persona.png", "reward_fluency.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(report/{name})" in text
    assert reward_trends({"seed0": [{"step": 0, "objective/kl": 0.1}]}, tmp_path / "none") == ""
    assert not (tmp_path / "none").exists()
