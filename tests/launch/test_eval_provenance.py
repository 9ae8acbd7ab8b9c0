"""A policy saved by ``p2bot rl`` records its reward models; ``p2bot eval --selfplay`` warns when a judge is one of them."""

import json

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from launch.cli import main as cli
from models.loading.embedded import embedded_receiver_path
from models.networks.receiver import Receiver
from models.networks.transmitter import Transmitter, saved_reward_models
from rewards import ScorerPool, build_composite
from rl.checkpoint import record_reward_models
from tests.models.transmitter_fixtures import save_tiny_lm


@pytest.fixture(scope="module")
def rl_policy(tmp_path_factory, tiny_receiver_dir):
    """The policy of a one-step ``p2bot rl`` run whose persona/repetition rewards scored with ``tiny_receiver_dir`` and
    whose fluency/coherence scored with its start model."""
    start = save_tiny_lm(tmp_path_factory.mktemp("start"), seed=1)
    out = tmp_path_factory.mktemp("rl") / "run"
    rc = cli(["rl", "--model_name_or_path", str(start), "--receiver_name_or_path", str(tiny_receiver_dir),
              "--output_dir", str(out), "--max_steps", "1", "--pairs_per_step", "1", "--rollouts_per_pair", "2",
              "--response_length", "4", "--max_exchanges", "1", "--num_ppo_epochs", "1", "--max_history_tokens", "32",
              "--disable_tqdm", "true", "--reward_funcs", "persona", "fluency", "coherence", "repetition"])
    assert rc == 0
    return start, out / "checkpoint-1" / "policy"


@pytest.fixture(scope="module")
def other_encoder(tmp_path_factory):
    """A second random encoder: a judge RL never saw."""
    tokenizer = AutoTokenizer.from_pretrained(embedded_receiver_path())
    torch.manual_seed(7)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return Receiver(BertModel(cfg), tokenizer).save_pretrained(tmp_path_factory.mktemp("other") / "encoder")


def _eval(policy, out, encoder, judge_lm, *extra):
    rc = cli(["eval", "--selfplay", "--model", str(policy), "--judge_encoder", str(encoder), "--judge_lm", str(judge_lm),
              "--pairs", "1", "--dialogues_per_pair", "1", "--exchanges", "1", "--max_new_tokens", "4",
              "--bootstrap_samples", "20", "--max_history_tokens", "32", "--num_persona_candidates", "3",
              "--output_dir", str(out), *extra])
    assert rc == 0
    return json.loads((out / "selfplay_results.json").read_text()), (out / "selfplay_table.md").read_text()


def test_the_rl_policy_records_the_receiver_and_lm_its_rewards_scored_with(rl_policy, tiny_receiver_dir):
    start, policy = rl_policy
    record = saved_reward_models(policy)
    assert [m["name"] for m in record["receiver"]] == [str(tiny_receiver_dir)]
    assert [m["name"] for m in record["lm"]] == [str(start)]
    assert Transmitter.from_pretrained(policy).reward_models == record  # a re-save (averaging, select) keeps it


def test_a_judge_that_is_a_reward_model_is_warned_about_in_the_results_and_table(rl_policy, tiny_receiver_dir,
                                                                                  tmp_path, capsys):
    start, policy = rl_policy
    result, table = _eval(policy, tmp_path / "same", tiny_receiver_dir, start, "--receiver", str(tiny_receiver_dir))
    warnings = result["warnings"]
    assert len(warnings) == 3
    encoder, lm, receiver = warnings
    assert encoder.startswith(f"--judge_encoder '{tiny_receiver_dir}' is the Receiver its persona rewards scored with")
    assert "not an independent judge" in encoder
    assert lm.startswith(f"--judge_lm '{start}' is the LM its fluency/coherence rewards scored with")
    assert receiver.startswith("--receiver") and receiver.endswith("reported apart: RL optimised it")
    assert all(f"Warning: {w}" in table for w in warnings)
    err = capsys.readouterr().err
    assert all(f"p2bot eval: warning: {w}" in err for w in warnings)


def test_the_same_model_by_another_path_is_still_recognised(rl_policy, tiny_receiver_dir, tmp_path):
    start, policy = rl_policy
    via_dots = f"{tiny_receiver_dir.parent}/../{tiny_receiver_dir.parent.name}/{tiny_receiver_dir.name}"
    result, _ = _eval(policy, tmp_path / "alias", via_dots, "none")
    assert len(result["warnings"]) == 1 and result["warnings"][0].startswith(f"--judge_encoder {via_dots!r}")


def test_independent_judges_give_no_warning(rl_policy, other_encoder, tmp_path):
    _, policy = rl_policy
    other_lm = save_tiny_lm(tmp_path / "judge_lm", seed=5)
    result, table = _eval(policy, tmp_path / "independent", other_encoder, other_lm)
    assert result["warnings"] == [] and "Warning:" not in table


def test_a_policy_rl_never_trained_gives_no_warning(tiny_receiver_dir, tmp_path):
    policy = save_tiny_lm(tmp_path / "sft", seed=1)
    result, _ = _eval(policy, tmp_path / "sft_eval", tiny_receiver_dir, policy)
    assert result["warnings"] == []


def test_record_reward_models_keeps_what_an_earlier_run_recorded(tiny_receiver_dir, other_encoder, tmp_path):
    from tests.models.transmitter_fixtures import tiny_transmitter

    policy = tiny_transmitter(seed=2)
    for receiver in (tiny_receiver_dir, other_encoder, tiny_receiver_dir):
        pool = ScorerPool(policy="embedded", receiver=str(receiver))
        reward = build_composite(["persona"], pool=pool)
        reward(["p"], ["i love jazz."], persona=[["i love jazz."]])
        record_reward_models(policy, reward)
    assert [m["name"] for m in policy.reward_models["receiver"]] == [str(tiny_receiver_dir), str(other_encoder)]
    assert "lm" not in policy.reward_models  # no reward scored with the LM
    policy.save_pretrained(tmp_path / "p")
    assert saved_reward_models(tmp_path / "p") == policy.reward_models
