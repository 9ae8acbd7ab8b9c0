"""``p2bot recipe`` end to end on tiny models: every stage, the enforced hold-out split, resume, bad recipes."""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from launch.cli import main
from launch.commands.recipe import RecipeError, command_of, load_recipe, stage_configs

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "rl"))
from tests.rl.rl_fixtures import build_tiny_model_dir, load_smollm2_tokenizer  # noqa: E402


def tiny_recipe(policy, receiver, out) -> dict:
    return {
        "output_dir": str(out), "data": "sample", "heldout_dialogues": 4, "seed": 1,
        "sft": {"model": str(policy), "max_steps": 1, "per_device_train_batch_size": 2, "max_history_tokens": 32,
                "report_to": "none", "save_strategy": "no", "disable_tqdm": True},
        "receiver": {"model_name_or_path": str(receiver), "max_steps": 1, "per_device_train_batch_size": 4,
                     "num_eval_negatives": 3, "save_steps": 0},
        "rl": {"max_steps": 1, "pairs_per_step": 1, "rollouts_per_pair": 2, "max_exchanges": 1, "response_length": 4,
               "num_ppo_epochs": 1, "max_history_tokens": 32, "disable_tqdm": True,
               "reward_funcs": [{"name": "persona", "args": {"contrastive": True}}, "copy", "echo"]},
        "eval": {"pairs": 2, "dialogues_per_pair": 1, "exchanges": 1, "max_new_tokens": 4, "bootstrap_samples": 50,
                 "judge_encoder": str(receiver), "judge_lm": str(policy), "max_history_tokens": 32,
                 "num_persona_candidates": 4},
        "gold": {"examples_per_dialogue": 1, "num_candidates": 4, "max_new_tokens": 4, "max_history_tokens": 32,
                 "bootstrap_samples": 50},
    }


def test_recipe_runs_every_stage_on_the_held_out_split_and_resumes(tiny_receiver_dir, tmp_path, capsys):
    policy = build_tiny_model_dir(tmp_path / "policy", load_smollm2_tokenizer())
    out = tmp_path / "run"
    recipe = tiny_recipe(policy, tiny_receiver_dir, out)
    recipe["rl"].update(max_steps=2, save_steps=1, save_total_limit=0)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["recipe", "--config", str(path)]) == 0
    stages = {s: yaml.safe_load((out / f"{s}.yaml").read_text()) for s in ("sft", "receiver", "rl", "eval")}
    assert stages["sft"]["skip_dialogues"] == 4 and stages["rl"]["skip_dialogues"] == 4
    assert stages["receiver"]["holdout_first"] == 4
    assert stages["eval"]["max_dialogues"] == 4 and stages["eval"]["skip_dialogues"] == 0
    assert stages["rl"]["model_name_or_path"] == str(out / "sft" / "model")
    result = json.loads((out / "eval" / "selfplay_results.json").read_text())
    last = str(out / "rl" / "checkpoint-2" / "policy")  # the evaluation takes RL's last checkpoint
    assert result["models"] == [last, str(out / "sft" / "model")] and not (out / "select").exists()
    eval_pairs = {d["pair_id"] for d in map(json.loads, (out / "eval" / "selfplay_dialogues.jsonl").open())}
    assert len(eval_pairs) == 2
    assert "perceive_hits1" in result["comparison"] and "receiver_hits1" in result["comparison"]
    assert result["seen_personas"]["source"] == "sample" and result["seen_personas"]["skip_dialogues"] == 4
    report = (out / "report.md").read_text()
    assert "difference (95% CI)" in report and "p2bot select" not in report
    gold = json.loads((out / "gold" / "eval_results.json").read_text())  # RL vs SFT on the held-out turns
    assert gold["model"] == last and gold["compare"]["model"] == str(out / "sft" / "model")
    assert len(set(gold["per_example"]["dialogue_id"])) == 4 and gold["settings"]["max_dialogues"] == 4
    assert "## Held-out turns: F1, Hits@1, gold PPL (p2bot eval, policy vs SFT)" in report
    assert "| policy | F1 ≥ SFT − 0.01 |" in report
    assert set(json.loads((out / "recipe.json").read_text())["seconds"]) == {"sft", "receiver", "rl", "eval", "gold"}
    capsys.readouterr()
    assert main(["recipe", "--config", str(path)]) == 0  # everything complete: nothing reruns
    assert capsys.readouterr().out.count("complete, skipped") == 5
    import os

    policy_file = out / "rl" / "checkpoint-2" / "policy" / "p2bot_transmitter.json"
    os.utime(policy_file)  # the policy changed after it was evaluated: both evaluations run again
    assert main(["recipe", "--config", str(path)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("complete, skipped") == 3 and printed.count("complete but stale") == 2
    assert f"eval: complete but stale ({out / 'rl' / 'checkpoint-2' / 'policy'} changed after it ran)" in printed
    assert json.loads((out / "gold" / "eval_results.json").read_text())["model"] == last


def test_recipe_refuses_to_move_the_split_or_wiring(tmp_path, capsys):
    for data_key in ("data", "data_path"):  # rl's old name for --data is the same option
        with pytest.raises(RecipeError, match=r"\['data'\] are set by the recipe"):
            stage_configs({"heldout_dialogues": 10, "rl": {data_key: "other.csv"}}, tmp_path)
    assert "p2bot rl: config key data_path is deprecated, use data" in capsys.readouterr().err
    plain = stage_configs({"heldout_dialogues": 10, "rl": {"max_steps": 7}}, tmp_path)
    assert "select" not in plain and plain["eval"]["model"] == str(tmp_path / "rl" / "checkpoint-7" / "policy")
    for bad, message in (({"heldout_dialogues": 0}, "heldout_dialogues"), ({"heldout_dialogues": 5, "typo": 1}, "typo"),
                         ({"heldout_dialogues": 5, "sft": [1]}, "field 'sft'")):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(RecipeError, match=message):
            load_recipe(path)
        assert main(["recipe", "--config", str(path)]) == 1
        assert capsys.readouterr().err.startswith("p2bot recipe: error:")


def test_shipped_p2_spc_recipe_parses_into_every_stage_config(tmp_path):
    from transformers import TrainingArguments

    from launch.commands.average import AverageConfig
    from launch.commands.eval import EvalConfig
    from launch.commands.receiver import ReceiverDataConfig
    from launch.config_io import parse_configs
    from models.training.receiver_training import ReceiverTrainingConfig
    from models.training.sft import TransmitterSFTConfig
    from rl.config import PPOConfig

    recipe = load_recipe(REPO / "launch" / "configs" / "experiments" / "p2_spc.yaml")
    configs = stage_configs(recipe, tmp_path)
    types = {"sft": (TransmitterSFTConfig, TrainingArguments), "rl": (PPOConfig,), "average": (AverageConfig,),
             "receiver": (ReceiverTrainingConfig, ReceiverDataConfig), "eval": (EvalConfig,)}
    assert {"sft", "receiver", "rl", "eval"} <= {command_of(stage) for stage in configs}
    assert {"gold", "gold-seed0"} <= set(configs) and configs["gold"]["selfplay"] is False
    for stage, config in configs.items():
        path = tmp_path / f"{stage}.yaml"
        path.write_text(yaml.safe_dump(config))
        parse_configs(types[command_of(stage)], ["--config", str(path)], prog=stage)


def test_parallel_runs_sft_and_receiver_side_by_side_and_a_failure_keeps_the_other(tiny_receiver_dir, tmp_path,
                                                                                    capsys):
    policy = build_tiny_model_dir(tmp_path / "policy", load_smollm2_tokenizer())
    out = tmp_path / "run"
    recipe = tiny_recipe(policy, tiny_receiver_dir, out)
    recipe["receiver"]["model_name_or_path"] = str(tmp_path / "no-such-receiver")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    argv = ["recipe", "--config", str(path), "--stages", "sft,receiver", "--parallel"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "stage 'receiver' failed" in err and str(out / "receiver.log") in err and "stage 'sft'" not in err
    assert (out / "sft" / "model" / "p2bot_transmitter.json").is_file()  # the other stage finished and is kept
    assert "no-such-receiver" in (out / "receiver.log").read_text()
    saved = json.loads((out / "recipe.json").read_text())
    assert set(saved["seconds"]) == {"sft"} and set(saved["wall_seconds"]) == {"sft"}

    recipe["receiver"]["model_name_or_path"] = str(tiny_receiver_dir)
    path.write_text(yaml.safe_dump(recipe))
    assert main(argv + ["--force"]) == 0  # both again, side by side
    assert (out / "receiver" / "model" / "p2bot_receiver.json").is_file()
    saved = json.loads((out / "recipe.json").read_text())
    assert set(saved["seconds"]) == {"sft", "receiver"} and set(saved["wall_seconds"]) == {"sft+receiver"}
    assert saved["wall_seconds"]["sft+receiver"] < saved["seconds"]["sft"] + saved["seconds"]["receiver"]


def test_rl_seeds_wire_one_run_per_seed_an_average_and_its_evaluation(tmp_path):
    configs = stage_configs({"heldout_dialogues": 10, "rl_seeds": [3, 5], "rl": {"max_steps": 7}}, tmp_path)
    assert list(configs) == ["sft", "receiver", "rl-seed3", "rl-seed5", "average", "eval", "eval-seed3", "eval-seed5",
                             "gold", "gold-seed3", "gold-seed5"]
    finals = [str(tmp_path / "rl" / f"seed-{s}" / "checkpoint-7" / "policy") for s in (3, 5)]
    for s in (3, 5):
        assert configs[f"rl-seed{s}"]["seed"] == s and configs[f"rl-seed{s}"]["max_steps"] == 7
        assert configs[f"rl-seed{s}"]["output_dir"] == str(tmp_path / "rl" / f"seed-{s}")
    assert configs["average"]["models"] == ",".join(finals)
    assert configs["eval"]["model"] == str(tmp_path / "average" / "model")
    for s, final in zip((3, 5), finals):  # each seed's own policy, against the SFT dialogues the eval stage played
        seed_eval = configs[f"eval-seed{s}"]
        assert seed_eval["model"] == final and seed_eval["output_dir"] == str(tmp_path / "eval" / f"seed-{s}")
        assert seed_eval["compare_transcripts"] == str(tmp_path / "eval" / "selfplay_dialogues.jsonl")
        own = ("model", "output_dir", "compare_transcripts")
        assert {k: v for k, v in seed_eval.items() if k not in own} == \
            {k: v for k, v in configs["eval"].items() if k not in own}
        seed_gold = configs[f"gold-seed{s}"]  # on the held-out turns, against SFT's values the gold stage wrote
        assert seed_gold["model"] == final and seed_gold["output_dir"] == str(tmp_path / "gold" / f"seed-{s}")
        assert seed_gold["compare_results"] == str(tmp_path / "gold") and seed_gold["selfplay"] is False
    assert configs["gold"]["model"] == str(tmp_path / "average" / "model")
    assert configs["gold"]["compare"] == str(tmp_path / "sft" / "model") and configs["gold"]["max_dialogues"] == 10


@pytest.mark.parametrize("extra, message", [
    ({"rl_seeds": [1]}, "two or more distinct"), ({"rl_seeds": [1, 1]}, "two or more distinct"),
    ({"rl_seeds": "0,1"}, "two or more distinct"),
    ({"rl_seeds": [0, 1], "rl": {"seed": 4}}, "'seed' is set by 'rl_seeds'"),
])
def test_bad_rl_seeds_are_named(tmp_path, extra, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"heldout_dialogues": 4, **extra}))
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


@pytest.mark.parametrize("select", [{"pairs": 8}, {}, None])
def test_a_select_mapping_is_refused_naming_the_file_and_the_field(tmp_path, capsys, select):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"heldout_dialogues": 4, "select": select}))
    with pytest.raises(RecipeError, match=r"recipe\.yaml: field 'select': a recipe has no checkpoint-selection stage"):
        load_recipe(path)
    assert main(["recipe", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "field 'select'" in err and "p2bot select" in err
    path.write_text(yaml.safe_dump({"heldout_dialogues": 4}))
    assert main(["recipe", "--config", str(path), "--stages", "select"]) == 1  # no stage of that name either
    assert "--stages: unknown stages ['select']" in capsys.readouterr().err


def test_recipe_averages_the_rl_seeds_run_side_by_side(tiny_receiver_dir, tmp_path, capsys):
    from models.networks.transmitter import Transmitter
    from rl.evaluation.averaging import average_transmitters

    policy = build_tiny_model_dir(tmp_path / "policy", load_smollm2_tokenizer())
    out = tmp_path / "run"
    recipe = tiny_recipe(policy, tiny_receiver_dir, out)
    recipe["rl_seeds"] = [0, 1, 2]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    argv = ["recipe", "--config", str(path), "--parallel", "--max_parallel", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert all(f"rl-seed{s}: p2bot rl" in printed for s in (0, 1, 2)) and "threads, output in" in printed
    finals = [out / "rl" / f"seed-{s}" / "checkpoint-1" / "policy" for s in (0, 1, 2)]
    assert [yaml.safe_load((out / f"rl-seed{s}.yaml").read_text())["seed"] for s in (0, 1, 2)] == [0, 1, 2]
    got = Transmitter.from_pretrained(out / "average" / "model").state_dict()
    want = average_transmitters(finals).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    result = json.loads((out / "eval" / "selfplay_results.json").read_text())
    assert result["models"] == [str(out / "average" / "model"), str(out / "sft" / "model")]
    saved = json.loads((out / "recipe.json").read_text())
    assert set(saved["seconds"]) == {"sft", "receiver", "rl-seed0", "rl-seed1", "rl-seed2", "average", "eval",
                                     "eval-seed0", "eval-seed1", "eval-seed2", "gold", "gold-seed0", "gold-seed1",
                                     "gold-seed2"}
    for s in (0, 1, 2):
        seed_result = json.loads((out / "eval" / f"seed-{s}" / "selfplay_results.json").read_text())
        assert seed_result["models"] == [str(finals[s]), str(out / "sft" / "model")]
        assert seed_result["compare_transcripts"] == str(out / "eval" / "selfplay_dialogues.jsonl")
    report = (out / "report.md").read_text()
    assert "## Each RL seed and the average against SFT (the four targets)" in report
    assert all(f"| {name} | " in report for name in ("average", "seed0", "seed1", "seed2"))
    assert "## Reward components per RL run" in report and (out / "report" / "reward_persona.png").is_file()
    for s in (0, 1, 2):  # each seed on the held-out turns, SFT's values read from the gold stage
        seed_gold = json.loads((out / "gold" / f"seed-{s}" / "eval_results.json").read_text())
        assert seed_gold["model"] == str(finals[s])
        assert seed_gold["compare"]["read_from"] == str(out / "gold" / "eval_results.json")
    assert "(p2bot eval, average vs SFT)" in report
    assert all(line in report for line in ("| seed0 | ", "| seed2 | ")) and report.count("of 3 |") == 4
    results = json.loads((out / "recipe_results.json").read_text())  # the same, for a results page
    assert list(results["policies"]) == ["average", "seed0", "seed1", "seed2"]
    seed1 = results["policies"]["seed1"]
    assert seed1["selfplay"] == json.loads((out / "eval" / "seed-1" / "selfplay_results.json").read_text())["comparison"]
    assert seed1["gold"] == json.loads((out / "gold" / "seed-1" / "eval_results.json").read_text())["comparison"]
    rows = [json.loads(line) for line in (out / "rl" / "seed-1" / "metrics.jsonl").read_text().splitlines()]
    assert seed1["kl_last"] == rows[-1]["objective/kl"] and seed1["s_per_iteration"] > 0
    assert results["policies"]["average"]["kl_last"] is None and "persona" in results["reward_trends"]["means"]["seed0"]
    from launch.docs.results import RENDERERS, make_record

    record = make_record(out / "recipe_results.json", "x", "x")
    table = RENDERERS[record["kind"]](record["result"], None)
    assert "| seed1 | " in table and "four targets" in table and " of 4 | " in table and " of 3 | " in table
    assert "persona" in RENDERERS[record["kind"]](record["result"], "trends")
    assert "perplexity of the gold response" in RENDERERS[record["kind"]](record["result"], "gold")
    assert "- seed2: " in RENDERERS[record["kind"]](record["result"], "headline")
    # two RL runs at a time (--max_parallel 2), then the third (alone: the group has nothing else pending)
    assert {"sft+receiver", "rl-seed0+rl-seed1", "rl-seed2"} <= set(saved["wall_seconds"])
    assert main(argv) == 0  # everything complete: nothing reruns
    assert capsys.readouterr().out.count("complete, skipped") == 14
    # a fourth seed added to the finished run: only its stages run, the average of seeds 0-2 is kept
    averaged = (out / "average" / "model" / "p2bot_transmitter.json").stat().st_mtime_ns
    assert main(argv + ["--rl_seeds", "0", "1", "2", "3", "--stages", "rl,eval,gold"]) == 0
    printed = capsys.readouterr().out
    ran = [line.removeprefix("=== [recipe] ").split(":")[0] for line in printed.splitlines() if ": p2bot " in line]
    assert sorted(ran) == ["eval-seed3", "gold-seed3", "rl-seed3"]
    assert yaml.safe_load((out / "rl-seed3.yaml").read_text())["seed"] == 3
    assert (out / "average" / "model" / "p2bot_transmitter.json").stat().st_mtime_ns == averaged
    assert list(json.loads((out / "recipe_results.json").read_text())["policies"]) == [
        "average", "seed0", "seed1", "seed2", "seed3"]
    assert main(argv + ["--rl_seeds", "3"]) == 1
    assert "--rl_seeds: expected a list of two or more distinct integer seeds" in capsys.readouterr().err


def test_rl_resumes_from_its_last_checkpoint_unless_forced(tmp_path):
    recipe = {"heldout_dialogues": 10, "rl": {"max_steps": 7}}
    assert stage_configs(recipe, tmp_path)["rl"]["resume_from_checkpoint"] is None  # nothing to resume yet
    (tmp_path / "rl" / "checkpoint-3" / "policy").mkdir(parents=True)
    assert stage_configs(recipe, tmp_path)["rl"]["resume_from_checkpoint"] == "latest"
    assert stage_configs(recipe, tmp_path, force=True)["rl"]["resume_from_checkpoint"] is None


def test_an_evaluation_is_stale_when_its_options_or_inputs_changed(tmp_path):
    import os

    from launch.commands.recipe import stale

    policy, sft = tmp_path / "rl" / "policy", tmp_path / "sft" / "model"
    for folder in (policy, sft):
        folder.mkdir(parents=True)
        (folder / "p2bot_transmitter.json").write_text("{}")
    (tmp_path / "eval").mkdir()
    transcripts = tmp_path / "eval" / "selfplay_dialogues.jsonl"
    transcripts.write_text("")
    config = {"model": str(policy), "compare": str(sft), "compare_transcripts": str(transcripts),
              "output_dir": str(tmp_path / "eval" / "seed-1")}
    (tmp_path / "eval-seed1.yaml").write_text(yaml.safe_dump(config))
    marker = tmp_path / "eval" / "seed-1" / "selfplay_results.json"
    marker.parent.mkdir()
    marker.write_text("{}")
    old = marker.stat().st_mtime - 10
    for f in (policy / "p2bot_transmitter.json", sft / "p2bot_transmitter.json", transcripts):
        os.utime(f, (old, old))
    assert stale("eval-seed1", tmp_path, config) is None
    assert "options differ" in stale("eval-seed1", tmp_path, {**config, "pairs": 7})
    os.utime(transcripts)  # SFT's dialogues were played again
    os.utime(marker, (old + 5, old + 5))
    assert stale("eval-seed1", tmp_path, config) == f"{transcripts} changed after it ran"
    assert stale("rl-seed1", tmp_path, {}) is None  # training stages resume instead
