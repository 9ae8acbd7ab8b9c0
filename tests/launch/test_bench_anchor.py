"""``p2bot bench anchor``: p2bot's PPO on the TRL 1.12 anchor's setup (the TRL anchor itself is not run here)."""

import csv
import json
import sys
import textwrap

import pytest

from launch.bench_anchor import AnchorError, compare, parse_result_line, read_prompts, run, run_anchor
from tests.rl.rl_fixtures import build_tiny_model_dir, load_smollm2_tokenizer

ROWS = [
    ("I love to bake cookies.\nI have a dog.", "I am a boy.\nI can move objects with my mind.",
     "User 1: Hi!\nUser 2: Hello!\nUser 1: What do you like?"),
    ("I knit.", "I like trains.\nI live in Ohio.", "User 1: Good morning, how are you?\nUser 2: Fine."),
    ("I run.", "I am a chef.", "User 1: What is for dinner?\nUser 2: Pasta."),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_anchor"), load_smollm2_tokenizer())


@pytest.fixture()
def spc_csv(tmp_path):
    path = tmp_path / "spc.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)  # \r\n row ends, as the real file has
        writer.writerow(["user 1 personas", "user 2 personas", "Best Generated Conversation"])
        writer.writerows(ROWS)
    return path


def test_prompts_are_built_as_the_anchor_builds_them(spc_csv):
    prompts = read_prompts(spc_csv, num_prompts=2)
    assert prompts == ["Your persona: I am a boy. I can move objects with my mind.\nPartner: Hi!\nYou:",
                       "Your persona: I like trains. I live in Ohio.\nPartner: Good morning, how are you?\nYou:"]


def test_p2bot_side_times_iterations_measures_memory_and_trains(tmp_path, tiny, spc_csv, capsys):
    out = tmp_path / "bench"
    assert run(["--data", str(spc_csv), "--model", str(tiny), "--iters", "1", "--epochs", "1", "--batch_size", "2",
                "--response_length", "4", "--output_dir", str(out)]) == 0
    report = json.loads((out / "bench_anchor.json").read_text())
    ours = report["p2bot"]
    assert ours["seconds_per_iteration"] > 0 and ours["peak_rss_gb"] > 0
    assert ours["peak_rss_gb"] >= ours["rss_after_loading_gb"] > 0
    (it,) = ours["iterations"]
    assert it["seconds"] >= it["generate_s"] + it["score_s"] + it["step_s"] - 1e-6
    assert it["experience_s"] > 0 and it["update_s"] > 0 and it["experience_s"] + it["update_s"] <= it["step_s"]
    assert 2 <= it["response_tokens"] <= 8 and it["mean_score"] < 0  # a mean log-prob
    assert "objective/kl" in it["stats"]
    assert ours["changed_parameter_tensors"] == ours["trainable_parameter_tensors"] > 0  # every trained tensor moved
    assert report["anchor"] is None and report["ratios"] is None
    assert report["provenance"]["command"].startswith("p2bot bench anchor --data")
    assert "s/iteration" in capsys.readouterr().out


def test_the_anchor_result_line_is_parsed():
    text = ("===training policy===\n{'loss/policy_avg': '2.99e-07'}\n"
            "RESULT trl112_ppo iters=3 epochs=4 batch=8 resp=32 wall=119.1s per_iter=39.7s peak_rss_gb=8.34\n")
    result = parse_result_line(text)
    assert result == dict(name="trl112_ppo", iters=3, epochs=4, batch=8, resp=32, wall_s=119.1, per_iter_s=39.7,
                          peak_rss_gb=8.34)
    ratios = compare({"seconds_per_iteration": 19.85, "peak_rss_gb": 2.0}, result)
    assert ratios["seconds_per_iteration"]["ratio"] == pytest.approx(0.5)
    assert ratios["seconds_per_iteration"]["meets_target"] and ratios["peak_rss_gb"]["meets_target"]
    with pytest.raises(ValueError, match="no 'RESULT"):
        parse_result_line("Traceback (most recent call last):\n")


def test_the_anchor_runs_with_the_setup_in_its_environment(tmp_path, spc_csv):
    script = tmp_path / "fake_anchor.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        print("noise")
        print(f"RESULT fake iters={sys.argv[1]} epochs={sys.argv[2]} threads={os.environ['OMP_NUM_THREADS']} "
              f"smol={os.environ['SMOL_DIR']} csv_ok={os.path.isfile(os.environ['SPC_CSV'])} "
              f"out_ok={os.path.isdir(os.environ['OUT_DIR'])} per_iter=1.5s peak_rss_gb=2.00")
    """))
    result = run_anchor(sys.executable, str(script), 3, 4, model_dir="/models/smol", data=str(spc_csv), threads=1,
                        log_path=tmp_path / "log.txt")
    assert (result["iters"], result["epochs"], result["threads"], result["smol"]) == (3, 4, 1, "/models/smol")
    assert result["csv_ok"] == "True" and result["out_ok"] == "True" and result["per_iter_s"] == 1.5
    assert "noise" in (tmp_path / "log.txt").read_text()


def test_a_failing_anchor_raises_with_its_stderr_tail(tmp_path, spc_csv):
    script = tmp_path / "broken_anchor.py"
    script.write_text("import sys\nprint('loading...', file=sys.stderr)\nraise ImportError('no module named trl')\n")
    with pytest.raises(AnchorError, match=r"exit code 1\)[\s\S]*ImportError: no module named trl"):
        run_anchor(sys.executable, str(script), 1, 1, model_dir="x", data=str(spc_csv), threads=1)
    quiet = tmp_path / "quiet_anchor.py"
    quiet.write_text("print('done')\n")
    with pytest.raises(AnchorError, match="no RESULT line"):
        run_anchor(sys.executable, str(quiet), 1, 1, model_dir="x", data=str(spc_csv), threads=1)


def test_a_missing_data_file_is_an_error_naming_it(tmp_path):
    from launch.errors import CliError

    missing = tmp_path / "nowhere" / "valid.csv"
    with pytest.raises(CliError, match=f"--data: {missing}: no such file"):
        run(["--data", str(missing), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # failed before anything was loaded or written


def test_data_is_required_and_anchor_options_go_together(tmp_path, spc_csv, capsys):
    with pytest.raises(SystemExit):
        run(["--output_dir", str(tmp_path / "out")])
    assert "--data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["--data", str(spc_csv), "--anchor_python", sys.executable])
    assert "go together" in capsys.readouterr().err


def test_both_sides_side_by_side_with_a_stand_in_anchor(tmp_path, tiny, spc_csv, capsys):
    script = tmp_path / "stand_in_anchor.py"
    script.write_text("import os, sys\nassert os.path.isdir(os.environ['SMOL_DIR'])\n"
                      "print(f'RESULT stand_in iters={sys.argv[1]} epochs={sys.argv[2]} per_iter=100.0s peak_rss_gb=50.00')\n")
    out = tmp_path / "bench"
    args = ["--data", str(spc_csv), "--model", str(tiny), "--iters", "1", "--epochs", "1", "--batch_size", "2",
            "--response_length", "2", "--output_dir", str(out), "--anchor_python", sys.executable]
    assert run([*args, "--anchor_script", str(script)]) == 0
    report = json.loads((out / "bench_anchor.json").read_text())
    assert report["anchor"]["per_iter_s"] == 100.0 and report["anchor"]["model_dir"] == str(tiny)
    ratio = report["ratios"]["seconds_per_iteration"]
    assert ratio["ratio"] == pytest.approx(report["p2bot"]["seconds_per_iteration"] / 100.0) and ratio["target"] == 0.5
    assert report["ratios"]["peak_rss_gb"]["meets_target"]
    assert "p2bot/TRL" in capsys.readouterr().out

    broken = tmp_path / "broken_anchor.py"
    broken.write_text("raise ImportError('no module named trl')\n")
    with pytest.raises(SystemExit, match="exit code 1[\\s\\S]*no module named trl"):
        run([*args, "--anchor_script", str(broken)])
    assert json.loads((out / "bench_anchor.json").read_text())["anchor"] is None  # p2bot's side is kept
