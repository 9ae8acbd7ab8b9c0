"""``p2bot select`` end to end on tiny random models: candidates from a run directory, validation pairs, the choice."""

import json
import shutil

import pytest

from launch.cli import main as cli
from tests.launch.conftest import save_one_word_lm
from tests.models.transmitter_fixtures import save_tiny_lm


def select_args(run, baseline, judge_encoder, out) -> list[str]:
    return ["select", "--candidates", str(run), "--compare", str(baseline), "--judge_encoder", str(judge_encoder),
            "--data", "sample", "--skip_pairs", "2", "--pairs", "3", "--dialogues_per_pair", "1", "--exchanges", "1",
            "--max_new_tokens", "4", "--bootstrap_samples", "50", "--max_history_tokens", "32",
            "--num_persona_candidates", "5", "--output_dir", str(out)]


# the selection metric: distinct-1 (better higher) is known by hand for a one-word model (1 distinct word of 8 per
# pair), where a tiny random model repeats almost nothing; the PPL guard is set out of reach (a one-word baseline's
# judge PPL is no yardstick), copy and echo rates stay guarded
BY_DISTINCT = ["--metric", "distinct_1", "--max_ppl_increase", "1e6"]


def test_select_names_the_eligible_candidate(one_word_policy, tiny_receiver_dir, tmp_path, capsys):
    run = tmp_path / "rl"
    save_one_word_lm(run / "checkpoint-2" / "policy", word=" cat")  # as repetitive as the baseline: no gain
    save_tiny_lm(run / "checkpoint-10" / "policy", seed=2)  # varied words, echoes nothing: eligible
    (run / "checkpoint-3").mkdir()  # no policy/: not a candidate
    out = tmp_path / "select"
    argv = select_args(run, one_word_policy, tiny_receiver_dir, out) + BY_DISTINCT + [
        "--judge_lm", str(run / "checkpoint-10" / "policy")]
    assert cli(argv) == 0
    result = json.loads((out / "selection.json").read_text())
    assert [c["name"] for c in result["candidates"]] == ["checkpoint-2", "checkpoint-10"]  # numeric order
    assert result["num_pairs"] == 3 and result["skip_pairs"] == 2
    cat, varied = result["candidates"]
    assert cat["value"] == pytest.approx(1 / 8) and cat["comparison"]["distinct_1"]["b"] == pytest.approx(1 / 8)
    assert not cat["eligible"] and cat["violations"] == ["distinct_1 0.125 vs baseline 0.125 (needs more than +0%)"]
    assert varied["eligible"] and varied["violations"] == [] and varied["value"] > 1 / 8
    assert varied["comparison"]["echo_rate"]["a"] == 0 < varied["comparison"]["echo_rate"]["b"]
    assert result["eligible"] and result["chosen"] == "checkpoint-10"
    assert result["chosen_path"] == str(run / "checkpoint-10" / "policy")
    assert f"chosen: {result['chosen_path']}" in capsys.readouterr().out
    table = (out / "selection.md").read_text()
    assert "| checkpoint-10 |" in table and table.count("**chosen**") == 1 and "falling back" not in table
    assert table.index("**chosen**") > table.index("| checkpoint-10 |")


def test_select_with_none_eligible_falls_back_to_the_last_or_fails(one_word_policy, tiny_receiver_dir, tmp_path,
                                                                   capsys):
    baseline = save_tiny_lm(tmp_path / "sft", seed=1)
    run = tmp_path / "rl"
    shutil.copytree(one_word_policy, run / "checkpoint-2" / "policy")
    save_one_word_lm(run / "checkpoint-10" / "policy", word=" cat")
    out = tmp_path / "select"
    argv = select_args(run, baseline, tiny_receiver_dir, out) + BY_DISTINCT + ["--judge_lm", str(baseline)]
    assert cli(argv) == 0  # --if_none_eligible last (the default)
    result = json.loads((out / "selection.json").read_text())
    for c in result["candidates"]:  # both repeat one word (1/8 below the baseline) and B echoes A every time
        base = c["comparison"]["distinct_1"]["b"]
        assert not c["eligible"] and c["value"] == pytest.approx(1 / 8) and base > 1 / 8
        assert c["violations"] == [f"distinct_1 0.125 vs baseline {base:.3f} (needs more than +0%)",
                                   "echo_rate 1.000 > baseline 0.000"]
    assert not result["eligible"] and result["chosen"] == "checkpoint-10"
    assert result["chosen_path"] == str(run / "checkpoint-10" / "policy")
    assert f"chosen: {result['chosen_path']}" in capsys.readouterr().out
    table = (out / "selection.md").read_text()
    assert "No candidate beats the baseline and keeps every guard: falling back to the last, checkpoint-10." in table
    assert "**chosen**" not in table
    # --if_none_eligible fail: exit 3, nothing chosen, and it says why
    assert cli(argv + ["--if_none_eligible", "fail"]) == 3
    result = json.loads((out / "selection.json").read_text())
    assert result["chosen"] is None and result["chosen_path"] is None and not result["eligible"]
    captured = capsys.readouterr()
    assert "no candidate beats the baseline and keeps every guard (--if_none_eligible fail)" in captured.err
    assert "chosen:" not in captured.out
    assert (out / "selection.md").read_text().rstrip().endswith("No candidate beats the baseline and keeps every guard.")
    assert result["rule"] == {"metric": "distinct_1", "min_gain": 0.0, "max_ppl_increase": 1e6,
                              "no_higher_than_baseline": ["copy_rate", "echo_rate"]}


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
