"""``p2bot demo`` end to end on a tiny random policy and encoder (CleanRL-style smoke test of the whole pipeline)."""

import json
import sys
from pathlib import Path

import pytest

from launch.cli import main

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "rl"))
from tests.rl.rl_fixtures import build_tiny_model_dir, load_smollm2_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tiny_receiver_dir):
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_demo"), load_smollm2_tokenizer()), tiny_receiver_dir


def test_demo_runs_every_stage_and_writes_the_report(tiny_models, tmp_path, capsys):
    policy, receiver = tiny_models
    out = tmp_path / "demo"
    rc = main(["demo", "--policy", str(policy), "--receiver", str(receiver), "--output_dir", str(out),
               "--sft_steps", "2", "--receiver_steps", "2", "--rl_steps", "3", "--response_length", "4",
               "--sample_dialogues", "1", "--sample_exchanges", "1", "--heldout_dialogues", "4"])
    assert rc == 0
    report = out / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["eval"]) == {"eval_before_rl", "eval_after_rl"}
    assert metrics["eval"]["eval_after_rl"]["model"].endswith("checkpoint-3/policy")
    assert {"sft", "receiver", "eval_before_rl", "rl", "eval_after_rl", "selfplay_eval", "total"} <= set(metrics["timings_s"])
    selfplay = metrics["selfplay_eval"]
    assert selfplay["num_pairs"] == 4 and selfplay["labels"] == ["checkpoint-3/policy", "sft/model"]
    assert {"perceive_hits1", "receiver_hits1", "judge_ppl", "copy_rate", "echo_rate"} <= set(selfplay["comparison"])
    # the trained Receiver is the RL persona reward's: reported apart; the judge encoder and LM are not reward models
    assert len(selfplay["warnings"]) == 1 and selfplay["warnings"][0].startswith("--receiver")
    assert selfplay["warnings"][0].endswith("reported apart: RL optimised it")
    assert "difference (95% CI)" in (report / "selfplay_table.md").read_text()
    assert "reward/persona" in metrics["rl_curves_first_vs_last"] and "reward/fluency" in metrics["rl_curves_first_vs_last"]
    assert set(metrics["receiver"]["results"]) == {"lexical overlap", "untrained encoder", "trained receiver"}
    assert metrics["receiver"]["eval_dialogues"] == 4  # the held-out dialogues validate the Receiver, never train it
    for png in ("rewards.png", "kl.png", "entropy.png", "losses.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    rows = [json.loads(line) for line in (report / "rl_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    samples = (report / "samples_before_after_rl.md").read_text()
    assert "### Before RL (SFT)" in samples and "### After RL (PPO)" in samples and "\nB: " in samples
    assert "stage times" in capsys.readouterr().out


def test_demo_rejects_bad_sizes(capsys):
    assert main(["demo", "--rl_steps", "0"]) == 2
    assert "rl_steps must be >= 1" in capsys.readouterr().err


def test_the_demo_receiver_trains_only_on_the_dialogues_sft_and_rl_train_on(tmp_path):
    from data_prep import build_receiver_examples, read_dialogues, sample_data_path
    from launch.commands.demo import DemoConfig, receiver_argv
    from launch.commands.receiver import ReceiverDataConfig, split_dialogues
    from launch.config_io import parse_configs
    from models.training.receiver_training import ReceiverTrainingConfig

    cfg = DemoConfig(heldout_dialogues=4)
    data, _ = parse_configs((ReceiverDataConfig, ReceiverTrainingConfig), receiver_argv(cfg, tmp_path / "rcv"),
                            prog="p2bot receiver")
    train, _ = split_dialogues(data)
    rows = build_receiver_examples(train, data.num_train_negatives, seed=data.data_seed).to_list()
    everything = read_dialogues(sample_data_path()).dialogues
    # the pairs the demo's self-play evaluation judges (--max_dialogues N) and SFT/RL skip (--skip_dialogues N)
    heldout = everything[: cfg.heldout_dialogues]
    heldout_utterances = {u for d in heldout for u in d.turns} - {u for d in everything[cfg.heldout_dialogues:]
                                                                   for u in d.turns}
    assert heldout_utterances and rows
    assert not heldout_utterances & {r["utterance"] for r in rows}
    assert not {d.dialogue_id for d in heldout} & {r["dialogue_id"] for r in rows}
    assert len(train) == len(everything) - cfg.heldout_dialogues
