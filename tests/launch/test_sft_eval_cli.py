"""End-to-end smoke tests of ``p2bot sft``, ``p2bot eval`` and ``p2bot bench eval`` on a tiny random Llama."""

import json
import math

import pytest
import torch
import yaml
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from data_prep import read_dialogues, resolve_data_path
from launch.cli import main as cli
from launch.commands import bench
from models.loading.embedded import embedded_policy_path
from models.networks.transmitter import Transmitter
from models.prompting.prompt import PromptFormatter
from models.scoring.gold_eval import build_eval_examples
from models.scoring.metrics import unigram_f1


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    tok = AutoTokenizer.from_pretrained(embedded_policy_path())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    path = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def recompute_gold_metrics(model_dir, max_history_tokens: int, max_dialogues: int) -> dict:
    """PPL and Hits@1 of ``p2bot eval`` recomputed here: one full forward pass per (context, candidate), no KV cache,
    on the examples ``p2bot eval`` builds (1 per dialogue, 20 candidates, seed 0)."""
    model = Transmitter.from_pretrained(str(model_dir)).eval()
    fmt = PromptFormatter(model.tokenizer, max_history_tokens=max_history_tokens)
    examples = build_eval_examples(read_dialogues(resolve_data_path("")).dialogues[:max_dialogues], 20, 0, 1)
    nll, tokens, hits_lm, hits_nup = 0.0, 0, 0, 0
    with torch.no_grad():
        for ex in examples:
            context = fmt.encode_context(ex["persona"], ex["history"])
            cands = [fmt.encode_response(t) for t in [ex["response"], *ex["distractors"][:19]]]
            mean_lp = []
            for cand in cands:
                logp = model.lm(input_ids=torch.tensor([context + cand])).logits[0].float().log_softmax(-1)
                lp = logp[len(context) - 1:-1].gather(-1, torch.tensor(cand)[:, None]).squeeze(-1)  # (len(cand),)
                mean_lp.append(lp.mean().item())
                if cand is cands[0]:
                    nll, tokens = nll - lp.sum().item(), tokens + len(cand)
            nup = model.score_nup([context] * len(cands), cands).tolist()
            hits_lm += mean_lp[0] > max(mean_lp[1:])
            hits_nup += nup[0] > max(nup[1:])
    return {"ppl": math.exp(nll / tokens), "ppl_tokens": tokens, "hits1_lm": hits_lm / len(examples),
            "hits1_nup": hits_nup / len(examples), "golds": [ex["response"] for ex in examples]}


def test_sft_then_eval_end_to_end(tiny_dir, tmp_path, capsys):
    out = tmp_path / "sft"
    rc = cli(["sft", "--model", str(tiny_dir), "--max_dialogues", "2", "--max_history_tokens", "32",
              "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "2",
              "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1", "--report_to", "none",
              "--use_peft", "--lora_r", "2", "--disable_tqdm", "true"])
    assert rc == 0
    resolved = yaml.safe_load((out / "resolved_config.yaml").read_text())
    assert resolved["alpha"] == 0.6 and resolved["use_peft"] is True and resolved["max_steps"] == 2
    assert (out / "model" / "adapter_model.safetensors").is_file() and (out / "checkpoint-2").is_dir()
    assert "loss/nup" in capsys.readouterr().out + "".join(
        json.dumps(h) for h in json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"])
    Transmitter.from_pretrained(str(out / "model"))  # loadable

    # resume continues from the checkpoint instead of starting over: only step 3 runs (and logs)
    rc = cli(["sft", "--model", str(tiny_dir), "--max_dialogues", "2", "--max_history_tokens", "32",
              "--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "2",
              "--save_strategy", "no", "--report_to", "none", "--use_peft", "--lora_r", "2", "--disable_tqdm", "true",
              "--logging_steps", "1", "--resume_from_checkpoint", str(out / "checkpoint-2")])
    assert rc == 0
    assert capsys.readouterr().out.count("'loss/lm'") == 1

    ev = tmp_path / "eval"
    rc = cli(["eval", "--model", str(out / "model"), "--max_dialogues", "5", "--examples_per_dialogue", "1",
              "--max_history_tokens", "32", "--max_new_tokens", "4", "--output_dir", str(ev)])
    assert rc == 0
    res = json.loads((ev / "eval_results.json").read_text())
    assert res["num_examples"] == 5 and res["num_candidates"] == 20
    expected = recompute_gold_metrics(out / "model", max_history_tokens=32, max_dialogues=5)
    assert res["ppl_tokens"] == expected["ppl_tokens"]
    assert res["ppl"] == pytest.approx(expected["ppl"], rel=1e-4)
    assert res["hits1_lm"] == expected["hits1_lm"] and res["hits1_nup"] == expected["hits1_nup"]
    assert [s["gold"] for s in res["samples"]] == expected["golds"]  # every example is a sample here (5 of 5)
    assert res["f1"] == pytest.approx(sum(unigram_f1(s["generated"], s["gold"]) for s in res["samples"]) / 5)
    assert "Hits@1 (LM likelihood)" in capsys.readouterr().out
    assert (ev / "resolved_config.yaml").is_file()


def test_eval_rejects_bad_options(tmp_path, capsys):
    assert cli(["eval", "--num_beams", "2", "--do_sample", "true", "--output_dir", str(tmp_path)]) == 2
    assert "exclusive" in capsys.readouterr().err
    assert cli(["eval", "--data", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path)]) == 1


def test_bench_eval_reports_both_methods(tiny_dir, tmp_path, capsys):
    rc = cli(["bench", "eval", "--model", str(tiny_dir), "--num_examples", "3", "--max_new_tokens", "4",
              "--output_dir", str(tmp_path)])
    assert rc == 0
    rep = json.loads((tmp_path / "bench_eval.json").read_text())
    ours, seed = rep["ours"], rep["seed_style"]
    assert rep["num_examples"] == 3 and rep["speedup"] == pytest.approx(seed["seconds"] / ours["seconds"])
    assert ours["examples_per_s"] == pytest.approx(3 / ours["seconds"]) and ours["f1"] == seed["f1"]
    assert ours["peak_rss_mb"] > 0 and seed["examples_per_s"] == pytest.approx(3 / seed["seconds"])
    assert rep["same_outputs"] == 1.0  # greedy decoding: the two methods must agree
    assert "speedup" in capsys.readouterr().out


def test_bench_dispatcher(capsys):
    assert bench.main(["nope"]) == 2 and "unknown subcommand" in capsys.readouterr().err
    assert bench.main([]) == 0 and "eval" in capsys.readouterr().out
    assert all(":" in target for target in bench.BENCHMARKS.values())


def test_bench_selfplay_measures_both_loops_and_both_update_modes(tiny_dir, tmp_path, capsys):
    rc = cli(["bench", "selfplay", "--model", str(tiny_dir), "--num_pairs", "2", "--rollouts_per_pair", "1",
              "--num_exchanges", "2", "--response_length", "4", "--max_history_tokens", "32",
              "--micro_batch_size", "2", "--update_modes", "full", "lora+ckpt", "--output_dir", str(tmp_path)])
    assert rc == 0
    rep = json.loads((tmp_path / "bench_selfplay.json").read_text())
    assert rep["turns"] == 8 and rep["dialogues"] == 2
    for key in ("ours", "ours_no_reuse", "seed_style"):
        assert 0 < rep[key]["tokens"] <= 32, key  # 8 turns of at most 4 tokens
        assert rep[key]["tokens_per_s"] == pytest.approx(rep[key]["tokens"] / rep[key]["seconds"]), key
    assert rep["speedup"] == pytest.approx(rep["ours"]["tokens_per_s"] / rep["seed_style"]["tokens_per_s"])
    assert rep["reuse_speedup"] == pytest.approx(rep["ours"]["tokens_per_s"] / rep["ours_no_reuse"]["tokens_per_s"])
    assert 0 < rep["prefill_share"] < 1
    assert 0 < rep["reusable_share"] < 1  # the second exchange starts from each speaker's cached first turn
    full, lora = rep["update"]["full"], rep["update"]["lora+ckpt"]
    assert full["micro_batch_size"] == 2
    assert lora["trainable_parameters"] < full["trainable_parameters"]
    assert full["tokens_per_s"] > 0 and lora["peak_rss_mb"] > 0 and full["skipped"] == 0.0
    printed = capsys.readouterr().out
    assert "speedup over seed-style" in printed and "cross-turn cache reuse" in printed and "peak RSS" in printed


def test_bench_selfplay_rejects_unknown_update_mode(tmp_path, capsys):
    assert cli(["bench", "selfplay", "--update_modes", "qlora", "--output_dir", str(tmp_path)]) == 2
    assert "qlora" in capsys.readouterr().err


def test_reusable_share_counts_the_prefix_a_previous_turn_cached():
    from launch.bench_selfplay import _TimedPrefill

    timer = _TimedPrefill()
    # turn 0 (A): prompt 1 2 3, reply 4 5; turn 1 (B): prompt 9 9; turn 2 (A): prompt extends A's cached 1..5
    timer.calls = [([[1, 2, 3], [1, 2]], [[4, 5], [6]]), ([[9, 9], [9]], [[7], [7]]),
                   ([[1, 2, 3, 4, 5, 6, 7], [1, 2, 0, 6]], [[8], [8]])]
    total = 3 + 2 + 2 + 1 + 7 + 4
    assert timer.reusable_share() == pytest.approx((5 + 2) / total)  # second dialogue: the re-tokenised reply differs
    timer.reset()
    assert timer.calls == [] and timer.reusable_share() == 0.0


def test_bench_selfplay_compares_the_episode_layouts(tiny_dir, tmp_path, capsys):
    rc = cli(["bench", "selfplay", "--model", str(tiny_dir), "--num_pairs", "2", "--rollouts_per_pair", "1",
              "--num_exchanges", "1", "--response_length", "4", "--max_history_tokens", "256", "--skip_seed_style",
              "true", "--micro_batch_size", "2", "--update_modes", "none", "--layout_exchanges", "2",
              "--output_dir", str(tmp_path)])
    assert rc == 0
    runs = json.loads((tmp_path / "bench_selfplay.json").read_text())["layouts"]["2"]
    assert runs["turns"] == 8 and runs["turn"]["rows"] == 8
    assert runs["speaker"]["rows"] < 8  # speakers' turns chained into episodes (4 when every chain holds)
    assert runs["speaker"]["trained_tokens_per_s"] > 0
    assert runs["speedup"] == pytest.approx(runs["turn"]["seconds_per_step"] / runs["speaker"]["seconds_per_step"])
    assert "Episode layouts" in capsys.readouterr().out


def test_eval_compare_pairs_two_models_and_reuses_a_compare_result(tiny_dir, tmp_path, capsys):
    other = tmp_path / "other"
    torch.manual_seed(1)
    model = LlamaForCausalLM.from_pretrained(tiny_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(other)
    common = ["--max_dialogues", "4", "--examples_per_dialogue", "2", "--max_history_tokens", "32",
              "--max_new_tokens", "4", "--num_candidates", "5", "--bootstrap_samples", "200"]
    first, alone, again = tmp_path / "first", tmp_path / "alone", tmp_path / "again"
    assert cli(["eval", "--model", str(other), "--compare", str(tiny_dir), *common, "--output_dir", str(first)]) == 0
    res = json.loads((first / "eval_results.json").read_text())
    assert cli(["eval", "--model", str(other), *common, "--output_dir", str(alone)]) == 0
    single = json.loads((alone / "eval_results.json").read_text())
    comparison = res["comparison"]
    assert set(comparison) == {"f1", "hits1_nup", "hits1_lm", "ppl"}
    for key in ("f1", "hits1_nup", "hits1_lm", "ppl"):  # each side equals that model evaluated on its own
        assert comparison[key]["a"] == pytest.approx(single[key], rel=1e-9)
        assert comparison[key]["b"] == pytest.approx(res["compare"][key], rel=1e-9)
        c = comparison[key]
        assert c["low"] <= c["diff"] <= c["high"]
    assert comparison["ppl"]["rel"] == pytest.approx(single["ppl"] / res["compare"]["ppl"] - 1)
    assert res["per_example"]["dialogue_id"] == res["compare"]["per_example"]["dialogue_id"]
    assert len(res["per_example"]["f1"]) == 8 and (first / "eval_table.md").is_file()
    assert "paired over 4 dialogues" in capsys.readouterr().out

    # the compare model's values read back instead of evaluated: the same comparison
    assert cli(["eval", "--model", str(other), "--compare", str(tiny_dir), "--compare_results", str(first), *common,
                "--output_dir", str(again)]) == 0
    reused = json.loads((again / "eval_results.json").read_text())
    assert reused["comparison"] == comparison
    assert reused["compare"]["read_from"] == str(first / "eval_results.json")
    assert "read from" in capsys.readouterr().err

    # other settings, or a model the file does not hold, are refused by name
    assert cli(["eval", "--model", str(other), "--compare", str(tiny_dir), "--compare_results", str(first),
                *common[:-2], "--bootstrap_samples", "200", "--seed", "3", "--output_dir", str(again)]) == 1
    assert "seed 0 there, 3 here" in capsys.readouterr().err
    assert cli(["eval", "--model", str(tiny_dir), "--compare", str(first), "--compare_results", str(first), *common,
                "--output_dir", str(again)]) == 1
    assert "holds no per-turn values" in capsys.readouterr().err
    assert cli(["eval", "--model", str(other), "--compare_results", str(first), "--output_dir", str(again)]) == 2
    assert "--compare_results needs --compare" in capsys.readouterr().err
