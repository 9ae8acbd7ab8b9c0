"""``p2bot eval --selfplay`` end to end on tiny random models: files, paired comparison, optional judges, errors."""

import json
import os
import shutil

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from data_prep import build_selfplay_pairs, read_dialogues, resolve_data_path
from data_prep.personas import persona_key
from launch.cli import main as cli
from models.loading.embedded import embedded_receiver_path
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


def test_selfplay_eval_compares_two_models_with_every_judge(one_word_policy, tiny_policy, tiny_receiver_dir, tiny_nli,
                                                           tmp_path):
    out = tmp_path / "eval"
    rc = cli(base_args(one_word_policy, tiny_receiver_dir, out) + [
        "--compare", str(tiny_policy), "--receiver", str(tiny_receiver_dir), "--nli_model", str(tiny_nli),
        "--judge_persona_lm", str(tiny_policy)])
    assert rc == 0
    result = json.loads((out / "selfplay_results.json").read_text())
    assert result["num_pairs"] == 3 and result["skipped"] == [] and len(result["labels"]) == 2
    comparison = result["comparison"]
    assert result["judges"]["lexical"] == "tfidf" and result["judges"]["persona_lm"] == str(tiny_policy)
    for key in ("perceive_hits1", "lexical_hits1", "lexical_mrr", "lm_persona_hits1", "lm_persona_mrr", "receiver_hits1", "judge_ppl", "copy_rate", "echo_rate", "contradiction_persona",
                "distinct_2", "cutoff_rate"):
        assert {"a", "b", "diff", "low", "high", "rel"} <= set(comparison[key]), key
    dialogues = [json.loads(line) for line in (out / "selfplay_dialogues.jsonl").read_text().splitlines()]
    assert len(dialogues) == 2 * 3 and {d["model"] for d in dialogues} == set(result["labels"])
    assert all(len(d["turns"]) == len(d["speakers"]) == len(d["cut_off"]) == 2 for d in dialogues)
    one_word = [d for d in dialogues if d["model"] == result["labels"][0]]
    assert all(d["turns"] == ["dog dog dog dog"] * 2 and d["cut_off"] == [True, True] for d in one_word)
    # the one-word model, by hand: per pair, 1 distinct word of 8, 1 distinct bigram of 6, B echoes A, 4 words a
    # turn, every turn cut off; the random compare model (4 random tokens a turn) repeats nothing of its partner's
    for key, value in (("distinct_1", 1 / 8), ("distinct_2", 1 / 6), ("echo_rate", 1.0), ("mean_words", 4.0),
                       ("cutoff_rate", 1.0)):
        assert comparison[key]["a"] == pytest.approx(value), key
    echo, distinct = comparison["echo_rate"], comparison["distinct_1"]
    assert echo["b"] == 0 and echo["diff"] == echo["low"] == echo["high"] == pytest.approx(1.0)
    assert distinct["b"] > 0.5 and distinct["low"] <= distinct["diff"] <= distinct["high"] < 0  # the CI excludes 0
    assert distinct["diff"] == pytest.approx(1 / 8 - distinct["b"])
    for s in result["summaries"].values():
        assert s["perceive_hits1"]["low"] <= s["perceive_hits1"]["value"] <= s["perceive_hits1"]["high"]
    assert "difference (95% CI)" in (out / "selfplay_table.md").read_text()
    assert "## Dialogue" in (out / "selfplay_samples.md").read_text()


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
    assert rc == 1 and err[-1].startswith("p2bot eval: error: --compare:") and "missing" in err[-1]


@pytest.fixture(scope="module")
def other_policy(tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp("other"), seed=2)


@pytest.fixture(scope="module")
def earlier_run(tiny_policy, other_policy, tiny_receiver_dir, tmp_path_factory):
    """An evaluation of ``other_policy`` against ``tiny_policy`` (the compare model) whose transcripts are reused."""
    out = tmp_path_factory.mktemp("earlier") / "eval"
    assert cli(base_args(other_policy, tiny_receiver_dir, out) + ["--compare", str(tiny_policy)]) == 0
    return out


def records(out, model):
    return [r for r in map(json.loads, (out / "selfplay_dialogues.jsonl").read_text().splitlines()) if r["model"] == model]


def test_compare_transcripts_reuses_the_compare_models_dialogues(tiny_policy, other_policy, tiny_receiver_dir,
                                                                  earlier_run, tmp_path, capsys):
    out = tmp_path / "eval"
    capsys.readouterr()
    # the earlier run's judges (its judge LM was other_policy) judge the reused dialogues to the same numbers
    rc = cli(base_args(tiny_policy, tiny_receiver_dir, out) + ["--compare", str(other_policy), "--judge_lm",
                                                               str(other_policy), "--compare_transcripts", str(earlier_run)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "3 dialogues read from" in err and "warning" not in err
    result, before = (json.loads((d / "selfplay_results.json").read_text()) for d in (out, earlier_run))
    other, this = before["labels"][0], result["labels"][0]
    # the reused model's dialogues and every judged number are those of the run that generated them
    assert records(out, result["labels"][1]) == [dict(r, model=result["labels"][1]) for r in records(earlier_run, other)]
    assert result["summaries"][result["labels"][1]] == before["summaries"][other]
    # and this run's model played what the earlier run's compare model played: the same dialogues again
    assert [r["turns"] for r in records(out, this)] == [r["turns"] for r in records(earlier_run, before["labels"][1])]
    assert result["seconds"][result["labels"][1]]["selfplay"] == 0.0
    assert result["compare_transcripts"] == str(earlier_run)
    assert result["fingerprints"][str(tiny_policy)][0][0] == "model.safetensors"


@pytest.mark.parametrize("change, message", [
    (["--exchanges", "2"], "field exchanges is 1, this run has 2"),
    (["--seed", "3"], "field seed is 0, this run has 3"),
    (["--pairs", "2"], "field pairs is 3, this run has 2"),
])
def test_compare_transcripts_refuses_other_settings(tiny_policy, other_policy, tiny_receiver_dir, earlier_run,
                                                     tmp_path, capsys, change, message):
    rc = cli(base_args(tiny_policy, tiny_receiver_dir, tmp_path / "e") + change + [
        "--compare", str(other_policy), "--compare_transcripts", str(earlier_run)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and err.startswith("p2bot eval: error: ") and "resolved_config.yaml" in err and message in err


def test_compare_transcripts_refuses_another_or_changed_model(tiny_policy, other_policy, tiny_receiver_dir,
                                                               earlier_run, tmp_path, capsys):
    args = base_args(other_policy, tiny_receiver_dir, tmp_path / "e")
    # the earlier run evaluated other_policy, and tiny_policy as compare: a third model is not in it
    third = save_tiny_lm(tmp_path / "third", seed=3)
    assert cli(args + ["--compare", str(third), "--compare_transcripts", str(earlier_run)]) == 1
    assert "field models" in capsys.readouterr().err
    # same path, weights written again since: refused
    weights = other_policy / "model.safetensors"
    stat = weights.stat()
    try:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert cli(base_args(tiny_policy, tiny_receiver_dir, tmp_path / "e") + [
            "--compare", str(other_policy), "--compare_transcripts", str(earlier_run)]) == 1
        assert "changed since that run" in capsys.readouterr().err
    finally:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # this run's own output_dir, a folder with no evaluation, and --compare missing
    before = (earlier_run / "resolved_config.yaml").read_text()
    assert cli(args + ["--compare", str(tiny_policy), "--output_dir", str(earlier_run), "--compare_transcripts",
                       str(earlier_run)]) == 2  # refused before anything is written there
    assert "this run's output_dir" in capsys.readouterr().err
    assert (earlier_run / "resolved_config.yaml").read_text() == before
    assert cli(args + ["--compare", str(tiny_policy), "--compare_transcripts", str(tmp_path)]) == 1
    assert "resolved_config.yaml not found" in capsys.readouterr().err
    assert cli(args + ["--compare_transcripts", str(earlier_run)]) == 2  # a config error
    assert "needs --compare" in capsys.readouterr().err


def test_compare_transcripts_names_the_line_of_a_broken_record(tiny_policy, other_policy, tiny_receiver_dir,
                                                                earlier_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(earlier_run, copy)
    lines = (copy / "selfplay_dialogues.jsonl").read_text().splitlines()
    compare_label = json.loads((copy / "selfplay_results.json").read_text())["labels"][1]
    # the file holds the evaluated model's 3 dialogues, then the compare model's: break the compare's first record
    assert [json.loads(line)["model"] for line in lines][3:] == [compare_label] * 3
    lines[3] = json.dumps({k: v for k, v in json.loads(lines[3]).items() if k != "turns"})
    (copy / "selfplay_dialogues.jsonl").write_text("\n".join(lines) + "\n")
    rc = cli(base_args(other_policy, tiny_receiver_dir, tmp_path / "e") + ["--compare", str(tiny_policy),
                                                                          "--compare_transcripts", str(copy)])
    err = capsys.readouterr().err
    assert rc == 1 and "selfplay_dialogues.jsonl, line 4" in err and "'turns'" in err
