import json

import pytest
import torch
import yaml

from data_prep import PersonaDialogue, write_jsonl
from launch.cli import main
from models.networks.receiver import Receiver

WORDS = ["hiking", "chess", "jazz", "baking", "surfing", "painting", "fishing", "gardening", "poetry", "karate",
         "cycling", "pottery", "skiing", "knitting", "tennis", "opera", "nurse", "pilot", "chef", "farmer"]


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_receiver_dir):
    return tiny_receiver_dir


@pytest.fixture(scope="module")
def dialogue_file(tmp_path_factory):
    dialogues = []
    for i in range(20):
        a, b = WORDS[i], WORDS[(i + 7) % 20]
        dialogues.append(PersonaDialogue([f"i love {a}.", "i have a cat."], [f"i love {b}.", "i live in a city."],
                                         [f"{a} is my passion", f"i prefer {b}", "cool", "my cat sleeps"],
                                         dialogue_id=f"cli:{i}"))
    path = tmp_path_factory.mktemp("data") / "dialogues.jsonl"
    write_jsonl(dialogues, path)
    return path


def test_receiver_cli_end_to_end_and_resume(tiny_model_dir, dialogue_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["receiver", "--data", str(dialogue_file), "--eval_fraction", "0.4", "--num_eval_negatives", "5",
            "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out),
            "--per_device_train_batch_size", "4", "--save_steps", "1", "--use_cpu", "true"]
    assert main([*args, "--max_steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "12 train dialogues" in printed and "8 validation dialogues" in printed
    for name in ("lexical overlap", "untrained encoder", "trained receiver"):
        assert name in printed
    metrics = json.loads((out / "receiver_metrics.json").read_text())
    assert set(metrics["results"]) == {"lexical overlap", "untrained encoder", "trained receiver"}
    assert metrics["results"]["trained receiver"]["num_candidates"] == 6 and metrics["steps"] == 2
    gain = metrics["trained_minus_baseline"]["untrained encoder"]["hits@1"]
    assert gain["diff"] == pytest.approx(metrics["results"]["trained receiver"]["hits@1"]
                                         - metrics["results"]["untrained encoder"]["hits@1"], abs=1e-6)
    assert gain["low"] <= gain["diff"] <= gain["high"]
    assert "trained − lexical overlap: hits@1" in printed
    resolved = yaml.safe_load((out / "resolved_config.yaml").read_text())
    assert resolved["num_eval_negatives"] == 5 and resolved["max_steps"] == 2 and resolved["margin"] == 0.5
    assert Receiver.from_pretrained(out / "model").embed(["i love chess"]).shape == (1, 32)

    assert main([*args, "--max_steps", "3", "--resume", "true", "--skip_baselines", "true"]) == 0
    printed = capsys.readouterr().out
    assert "at step 2" in printed and "untrained encoder" not in printed
    assert json.loads((out / "receiver_metrics.json").read_text())["steps"] == 3


def test_receiver_cli_reports_too_few_dialogues_for_the_negatives(tiny_model_dir, dialogue_file, tmp_path, capsys):
    # 20 dialogues hold 40 personas: a row's own two excluded, 45 distractors cannot be found even with the
    # training dialogues' personas added to the small validation set's pool
    args = ["receiver", "--data", str(dialogue_file), "--num_eval_negatives", "45", "--model_name_or_path",
            str(tiny_model_dir), "--output_dir", str(tmp_path / "run"), "--max_steps", "1"]
    assert main(args) == 1
    assert "num_eval_negatives=45" in capsys.readouterr().err


def test_holdout_first_keeps_the_first_dialogues_for_validation(dialogue_file):
    from launch.commands.receiver import ReceiverDataConfig, split_dialogues

    train, held = split_dialogues(ReceiverDataConfig(data=str(dialogue_file), holdout_first=5))
    assert [d.dialogue_id for d in held] == [f"cli:{i}" for i in range(5)]
    assert [d.dialogue_id for d in train] == [f"cli:{i}" for i in range(5, 20)]
    with pytest.raises(ValueError, match="holdout_first=20 leaves no training dialogue"):
        split_dialogues(ReceiverDataConfig(data=str(dialogue_file), holdout_first=20))


@pytest.mark.distributed
@pytest.mark.slow
def test_receiver_trains_under_two_ddp_processes(tiny_model_dir, dialogue_file, tmp_path):
    """``accelerate launch`` with ``cpu_ddp.yaml``: each process takes its share of a step's rows; one model is written."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(repo / "launch" / "configs" / "accelerate" / "cpu_ddp.yaml"), "-m", "launch.cli", "receiver",
           "--data", str(dialogue_file), "--eval_fraction", "0.4", "--num_eval_negatives", "5",
           "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--max_steps", "3",
           "--per_device_train_batch_size", "4", "--save_steps", "0", "--skip_baselines", "true"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "receiver_metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["processes"] == 2 and set(metrics["results"]) == {"trained receiver"}
    trained = Receiver.from_pretrained(out / "model").encoder.state_dict()
    start = Receiver.from_pretrained(tiny_model_dir).encoder.state_dict()
    assert any(not torch.equal(trained[k], start[k]) for k in start)
