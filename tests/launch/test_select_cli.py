"""``p2bot select`` end to end on tiny random models: candidates from a run directory, validation pairs, the choice."""

import json

from launch.cli import main as cli
from rl.evaluation.selection import SelectionRule, check, choose
from tests.models.transmitter_fixtures import save_tiny_lm


def test_select_compares_every_checkpoint_with_the_baseline_and_names_the_best_eligible(tiny_receiver_dir, tmp_path,
                                                                                        capsys):
    baseline = save_tiny_lm(tmp_path / "sft", seed=1)
    run = tmp_path / "rl"
    save_tiny_lm(run / "checkpoint-2" / "policy", seed=1)  # the baseline's weights: keeps the guards, gains nothing
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
    assert all(c["diff"] == 0 for c in same["comparison"].values())
    assert not same["eligible"] and same["violations"] == ["perceive_hits1 " + "{0:.3f} vs baseline {0:.3f} (needs more "
                                                           "than +0%)".format(same["value"])]
    rule = SelectionRule()
    expected = choose([check(c["name"], c["comparison"], rule) for c in result["candidates"]])
    name = expected.name if expected else "checkpoint-10"  # none eligible: the last, and it says so
    assert result["eligible"] == (expected is not None) and result["chosen"] == name
    assert result["chosen_path"] == str(run / name / "policy")
    assert f"chosen: {result['chosen_path']}" in capsys.readouterr().out
    fell_back = "No candidate beats the baseline and keeps every guard: falling back to the last, checkpoint-10."
    said = "**chosen**" if expected else fell_back
    assert said in (out / "selection.md").read_text()
    # --if_none_eligible fail: the identical candidate alone gains nothing, so nothing is eligible: exit 3
    argv[argv.index("--candidates") + 1] = str(run / "checkpoint-2" / "policy")
    assert cli(argv + ["--if_none_eligible", "fail"]) == 3
    assert json.loads((out / "selection.json").read_text())["chosen"] is None
    assert "no candidate beats the baseline and keeps every guard" in capsys.readouterr().err
    assert json.loads((out / "selection.json").read_text())["rule"]["min_gain"] == 0.0


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


def test_select_judges_the_baselines_dialogues_from_an_earlier_eval(tiny_receiver_dir, tmp_path, capsys):
    """``--compare_transcripts``: the baseline is not played again; the selection is the one a fresh run makes."""
    baseline = save_tiny_lm(tmp_path / "sft", seed=1)
    run = tmp_path / "rl"
    for step, seed in ((1, 2), (2, 3)):
        save_tiny_lm(run / f"checkpoint-{step}" / "policy", seed=seed)
    common = ["--compare", str(baseline), "--judge_encoder", str(tiny_receiver_dir), "--judge_lm", str(baseline),
              "--data", "sample", "--skip_pairs", "2", "--pairs", "3", "--dialogues_per_pair", "1", "--exchanges", "1",
              "--max_new_tokens", "4", "--bootstrap_samples", "50", "--max_history_tokens", "32",
              "--num_persona_candidates", "5"]
    earlier = tmp_path / "eval"
    assert cli(["eval", "--selfplay", "--model", str(run / "checkpoint-1" / "policy"), *common,
                "--output_dir", str(earlier)]) == 0
    assert cli(["select", "--candidates", str(run), *common, "--output_dir", str(tmp_path / "fresh")]) == 0
    capsys.readouterr()
    assert cli(["select", "--candidates", str(run), *common, "--compare_transcripts", str(earlier),
                "--output_dir", str(tmp_path / "reused")]) == 0
    assert "3 dialogues read from" in capsys.readouterr().err
    fresh, reused = (json.loads((tmp_path / d / "selection.json").read_text()) for d in ("fresh", "reused"))
    assert reused == fresh and len(fresh["candidates"]) == 2
    # other validation pairs than the earlier evaluation's: refused, naming the field
    other = list(common)
    other[other.index("--skip_pairs") + 1] = "1"
    assert cli(["select", "--candidates", str(run), *other, "--compare_transcripts", str(earlier),
                "--output_dir", str(tmp_path / "other")]) == 1
    assert "field skip_pairs is 2, this run has 1" in capsys.readouterr().err
