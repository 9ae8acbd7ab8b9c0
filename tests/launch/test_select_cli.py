"""``p2bot select`` end to end on tiny random models: candidates from a run directory, validation pairs, the choice."""

import json

from launch.cli import main as cli
from rl.selection import SelectionRule, check, choose
from tests.models.transmitter_fixtures import save_tiny_lm


def test_select_compares_every_checkpoint_with_the_baseline_and_names_the_best_eligible(tiny_receiver_dir, tmp_path,
                                                                                        capsys):
    baseline = save_tiny_lm(tmp_path / "sft", seed=1)
    run = tmp_path / "rl"
    save_tiny_lm(run / "checkpoint-2" / "policy", seed=1)  # the baseline's weights: keeps every guard
    save_tiny_lm(run / "checkpoint-10" / "policy", seed=2)
    (run / "checkpoint-3").mkdir()  # no policy/: not a candidate
    out = tmp_path / "select"
    argv = ["select", "--candidates", str(run), "--compare", str(baseline), "--judge_encoder", str(tiny_receiver_dir),
            "--judge_lm", str(baseline), "--data", "sample", "--skip_pairs", "2", "--pairs", "3",
            "--dialogues_per_pair", "1", "--exchanges", "1", "--max_new_tokens", "4", "--bootstrap_samples", "50",
            "--max_history_tokens", "32", "--num_persona_candidates", "5", "--output_dir", str(out)]
    assert cli(argv) == 0
    result = json.loads((out / "selection.json").read_text())
    assert [c["name"] for c in result["candidates"]] == ["checkpoint-2", "checkpoint-10"]  # numeric order
    assert result["num_pairs"] == 3 and result["skip_pairs"] == 2
    same = result["candidates"][0]
    assert same["eligible"] and all(c["diff"] == 0 for c in same["comparison"].values())
    rule = SelectionRule()
    expected = choose([check(c["name"], c["comparison"], rule) for c in result["candidates"]])
    assert result["eligible"] and result["chosen"] == expected.name
    assert result["chosen_path"] == str(run / expected.name / "policy")
    assert f"chosen: {result['chosen_path']}" in capsys.readouterr().out
    assert "**chosen**" in (out / "selection.md").read_text()


def test_select_errors_name_the_input(tiny_receiver_dir, tmp_path, capsys):
    baseline = save_tiny_lm(tmp_path / "sft", seed=1)
    (tmp_path / "empty").mkdir()
    common = ["--compare", str(baseline), "--judge_encoder", str(tiny_receiver_dir), "--output_dir", str(tmp_path / "o")]
    assert cli(["select", "--candidates", str(tmp_path / "empty")] + common) == 1
    assert "no checkpoint-*/policy" in capsys.readouterr().err
    assert cli(["select", "--candidates", str(baseline), "--skip_pairs", "1000"] + common) == 1
    assert "no persona pair left" in capsys.readouterr().err
    assert cli(["select", "--candidates", str(baseline), "--metric", "copy_rate"] + common) == 2
    assert "not one that is better higher" in capsys.readouterr().err
    assert cli(["select", "--candidates", str(baseline), "--output_dir", str(tmp_path / "o")]) == 2
    assert "--compare is required" in capsys.readouterr().err
