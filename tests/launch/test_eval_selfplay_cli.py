"""``p2bot eval --selfplay`` end to end on tiny random models: files, paired comparison, optional judges, errors."""

import json

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from data_prep import build_selfplay_pairs, read_dialogues, resolve_data_path
from launch.cli import main as cli
from models.embedded import embedded_receiver_path
from rl.evaluation import persona_key
from tests.models.transmitter_fixtures import save_tiny_lm


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp("policy"), seed=1)


@pytest.fixture(scope="module")
def tiny_nli(tmp_path_factory):
    tok = AutoTokenizer.from_pretrained(embedded_receiver_path())
    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}))
    path = tmp_path_factory.mktemp("nli")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def base_args(policy, receiver, out):
    return ["eval", "--selfplay", "--model", str(policy), "--judge_encoder", str(receiver), "--judge_lm", str(policy),
            "--pairs", "3", "--dialogues_per_pair", "1", "--exchanges", "1", "--max_new_tokens", "4",
            "--bootstrap_samples", "50", "--max_history_tokens", "32", "--num_persona_candidates", "5",
            "--output_dir", str(out)]


def test_selfplay_eval_compares_two_models_with_every_judge(tiny_policy, tiny_receiver_dir, tiny_nli, tmp_path):
    out = tmp_path / "eval"
    rc = cli(base_args(tiny_policy, tiny_receiver_dir, out) + ["--compare", str(tiny_policy), "--receiver",
                                                                 str(tiny_receiver_dir), "--nli_model", str(tiny_nli)])
    assert rc == 0
    result = json.loads((out / "selfplay_results.json").read_text())
    assert result["num_pairs"] == 3 and result["skipped"] == [] and len(result["labels"]) == 2
    comparison = result["comparison"]
    for key in ("perceive_hits1", "receiver_hits1", "judge_ppl", "copy_rate", "echo_rate", "contradiction_persona",
                "distinct_2", "cutoff_rate"):
        assert {"a", "b", "diff", "low", "high", "rel"} <= set(comparison[key]), key
    # the same weights, seed and pairs: both models produce the same dialogues, so every difference is 0
    assert all(c["diff"] == 0 for c in comparison.values())
    for s in result["summaries"].values():
        assert s["perceive_hits1"]["low"] <= s["perceive_hits1"]["value"] <= s["perceive_hits1"]["high"]
    assert "difference (95% CI)" in (out / "selfplay_table.md").read_text()
    assert "## Dialogue" in (out / "selfplay_samples.md").read_text()
    dialogues = [json.loads(line) for line in (out / "selfplay_dialogues.jsonl").read_text().splitlines()]
    assert len(dialogues) == 2 * 3 and {d["model"] for d in dialogues} == set(result["labels"])
    assert all(len(d["turns"]) == len(d["speakers"]) == len(d["cut_off"]) == 2 for d in dialogues)


def test_selfplay_eval_without_nli_says_it_skipped(tiny_policy, tiny_receiver_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli(base_args(tiny_policy, tiny_receiver_dir, out) + ["--max_dialogues", "3", "--seen_personas_from",
                                                                 "sample", "--seen_personas_skip", "3"]) == 0
    result = json.loads((out / "selfplay_results.json").read_text())
    assert "comparison" not in result and any(s.startswith("consistency") for s in result["skipped"])
    summary = next(iter(result["summaries"].values()))
    assert "contradiction_persona" not in summary
    captured = capsys.readouterr()
    printed = captured.out
    assert "Skipped: consistency" in printed
    # --seen_personas_from names the evaluated file (the sample): it is read once
    assert captured.err.count("records read") == 1
    # unseen personas: those of the 3 evaluated pairs (the first 3 dialogues) that no later sample dialogue has
    dialogues = read_dialogues(resolve_data_path("")).dialogues
    seen = {persona_key(p) for d in dialogues[3:] for p in (d.persona_a, d.persona_b)}
    pairs = list(build_selfplay_pairs(dialogues[:3], seed=0))
    unseen = sum(persona_key(p[k]) not in seen for p in pairs for k in ("persona_a", "persona_b"))
    assert list(result["seen_personas"]["unseen_speakers"].values()) == [[unseen, 6]]
    assert ("perceive_hits1_unseen" in summary) == (unseen > 0) and f"{unseen} of 6 judged speakers" in printed


def test_selfplay_eval_missing_model_is_a_one_line_error(tiny_policy, tiny_receiver_dir, tmp_path, capsys):
    rc = cli(base_args(tiny_policy, tiny_receiver_dir, tmp_path / "e") + ["--compare", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("p2bot eval: error: model") and "missing" in err[-1]
