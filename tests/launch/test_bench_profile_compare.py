"""p2bot bench profile-compare: per-phase seconds, speed-up, peak RSS and config changes of profiled runs."""

import json

import pytest

from launch.bench_profile_compare import run


def profile(path, iteration_s, rollout_s, layout, rss):
    phases = {"rollout": {"seconds": 2 * rollout_s, "calls": 2, "peak_rss_mb": rss},
              "iteration": {"seconds": 2 * iteration_s, "calls": 2, "peak_rss_mb": rss}}
    data = {"steps": 2, "phases": phases, "iteration_s": iteration_s, "dialogues_per_step": 4,
            "provenance": {"command": "p2bot bench profile ...", "commit": "abc123def4567", "machine": "test box",
                           "config": {"episode_layout": layout, "output_dir": str(path.parent), "seed": 0}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def test_compare_reports_each_phase_the_speedup_and_what_changed(tmp_path, capsys):
    a = profile(tmp_path / "a" / "bench_profile.json", 100.0, 20.0, "turn", 9000.0)
    b = profile(tmp_path / "b" / "bench_profile.json", 40.0, 10.0, "speaker", 4000.0)
    assert run(["--runs", a, b, "--labels", "main", "new", "--output_dir", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "bench_profile_compare.json").read_text())
    main, new = result["runs"]
    assert main["per_iteration_s"] == {"rollout": 20.0, "iteration": 100.0}
    assert new["speedup"] == pytest.approx(2.5) and new["dialogues_per_s"] == pytest.approx(0.1)
    assert new["config_diff"] == 'episode_layout: "speaker"' and main["config_diff"] == "(baseline)"
    assert "| rollout | 20.0 | 10.0 |" in result["table"] and "2.50x" in result["table"]
    assert "4,000 MB" in capsys.readouterr().out


def test_a_file_that_is_not_a_profile_is_named(tmp_path, capsys):
    bad = tmp_path / "bench_eval.json"
    bad.write_text(json.dumps({"steps": 1}))
    good = profile(tmp_path / "a" / "bench_profile.json", 1.0, 0.5, "turn", 1.0)
    with pytest.raises(ValueError, match=r"bench_eval.json: field 'phases' is missing"):
        run(["--runs", good, str(bad), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        run(["--runs", good])
    assert "give at least two bench_profile.json files" in capsys.readouterr().err
