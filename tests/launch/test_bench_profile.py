"""``p2bot bench profile``: every phase of an RL iteration timed, on the same run ``p2bot rl`` builds."""

import json
import sys
from pathlib import Path

import pytest

from models.infra.profiling import PhaseProfiler

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "rl"))
from tests.rl.rl_fixtures import build_tiny_model_dir, load_smollm2_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_profile"), load_smollm2_tokenizer())


def test_profile_times_every_phase_of_an_iteration(tmp_path, tiny, tiny_receiver_dir, capsys):
    from launch.commands.bench import main

    out = tmp_path / "profile"
    assert main(["profile", "--model_name_or_path", str(tiny), "--receiver_name_or_path", str(tiny_receiver_dir),
                 "--reward_funcs", "fluency", "persona", "degeneration", "--pairs_per_step", "1",
                 "--rollouts_per_pair", "2", "--max_exchanges", "1", "--response_length", "4",
                 "--max_history_tokens", "32", "--num_ppo_epochs", "1", "--output_dir", str(out),
                 "--profile_steps", "2"]) == 0
    result = json.loads((out / "bench_profile.json").read_text())
    phases = result["phases"]
    for name in ("rollout", "score", "reward/fluency", "reward/persona", "reward/degeneration", "experience",
                 "experience/policy_forward", "experience/reference_forward", "update", "update/forward",
                 "update/backward", "update/optimizer", "checkpoint"):
        assert phases[name]["seconds"] > 0 and phases[name]["peak_rss_mb"] > 0, name
    assert phases["iteration"]["calls"] == 2 and phases["rollout"]["calls"] == 2
    parts = sum(phases[p]["seconds"] for p in ("rollout", "score", "experience", "update"))
    assert parts <= phases["iteration"]["seconds"] + 1e-6
    assert phases["update/forward"]["seconds"] <= phases["update"]["seconds"]
    assert phases["rollout"]["tokens"] > 0 and phases["experience/policy_forward"]["tokens_per_s"] > 0
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    assert result["provenance"]["command"].startswith("p2bot bench profile")
    assert "| update/backward |" in capsys.readouterr().out


def test_nested_and_repeated_phases_add_up():
    import time

    profiler = PhaseProfiler(interval=0.001)
    with profiler.phase("outer"):
        for _ in range(3):
            with profiler.phase("outer/inner", tokens=10):
                time.sleep(0.01)
    profiler.close()
    inner, outer = profiler.phases["outer/inner"], profiler.phases["outer"]
    assert inner.calls == 3 and inner.tokens == 30 and 0.03 <= inner.seconds <= outer.seconds
    assert outer.peak_rss >= inner.peak_rss > 0
    assert "| outer/inner | 3 |" in profiler.table(total="outer")
