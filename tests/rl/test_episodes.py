"""Speaker episodes: one row per speaker gives the turn layout's log-probs, values and loss; chains split where
the history was cut; temperature-scaled log-probs; the critic-free algorithms' advantages and losses."""

import copy

import pytest
import torch

from rl.config import PPOConfig
from rl.episodes import collate_episodes, speaker_episodes
from rl.experience import Rollout
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import PromptFormatter, Transmitter

PERSONA = {"A": ["i love hiking.", "i have two dogs."], "B": ["i am a nurse.", "i like tea."]}
TURNS = ["hi! how are you today?", "good, just back from a night shift.", "oh, are you a nurse? i hike a lot.",
         "yes, and i drink too much tea.", "ha, my dogs drink too much water.", "cute!"]


def dialogue_rollouts(formatter, dialogue_id="d0", scores=(0.5, -1.0, 2.0, 0.0, 1.0, -0.5), temperature=0.8):
    out = []
    for t, text in enumerate(TURNS):
        speaker = "AB"[t % 2]
        out.append(Rollout(formatter.encode_context(PERSONA[speaker], TURNS[:t]), formatter.encode_response(text),
                           score=scores[t], group=(dialogue_id[:-1], t, speaker), temperature=temperature,
                           info={"dialogue_id": dialogue_id, "speaker": speaker, "turn": t}))
    return out


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    torch.manual_seed(0)
    model = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    torch.nn.init.normal_(model.value_head.weight, std=0.5)  # non-zero values, so the value loss is exercised
    return model


def test_each_speaker_chains_into_one_episode_when_nothing_is_cut(policy):
    fmt = PromptFormatter(policy.tokenizer, max_history_tokens=1000)
    rollouts = dialogue_rollouts(fmt)
    episodes = speaker_episodes(rollouts)
    assert [len(e.spans) for e in episodes] == [3, 3]
    for ep in episodes:
        last = ep.rollouts[-1]
        assert ep.ids == last.query_ids + last.response_ids
        for (start, end), r in zip(ep.spans, ep.rollouts):
            assert ep.ids[start:end] == r.response_ids and ep.ids[:start] == r.query_ids
    exp = collate_episodes(episodes, pad_token_id=0)
    assert exp.turn_mask.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert exp.turn_scores.tolist() == [[0.5, 2.0, 1.0], [-1.0, 0.0, -0.5]]
    for b, ep in enumerate(episodes):  # the logit at response_index predicts the token
        offset = exp.input_ids.shape[1] - len(ep.ids)
        real = exp.response_mask[b] > 0
        assert torch.equal(exp.input_ids[b, exp.response_index[b, real] + 1], exp.response_ids[b, real])
        assert offset >= 0


def test_a_history_cut_from_the_left_starts_a_new_episode(policy):
    fmt = PromptFormatter(policy.tokenizer, max_history_tokens=20)
    episodes = speaker_episodes(dialogue_rollouts(fmt))
    assert sum(len(e.spans) for e in episodes) == 6 and len(episodes) > 2
    assert all(ep.ids[:s] == r.query_ids for ep in episodes for (s, _), r in zip(ep.spans, ep.rollouts))


@pytest.mark.parametrize("estimator", ["gae", "turn_gae"])
def test_speaker_layout_gives_the_turn_layouts_logprobs_values_and_loss(policy, estimator):
    fmt = PromptFormatter(policy.tokenizer, max_history_tokens=1000)
    rollouts = dialogue_rollouts(fmt, "p0#0") + dialogue_rollouts(fmt, "p0#1", scores=(1, 2, 3, 4, 5, 6))
    per_turn, losses = {}, {}
    for layout in ("turn", "speaker"):
        cfg = PPOConfig(episode_layout=layout, advantage_estimator=estimator, pairs_per_step=1, rollouts_per_pair=2,
                        max_steps=1, kl_coef=0.0)
        trainer = PPOTrainer(cfg, copy.deepcopy(policy))
        exp, rows = trainer.make_experience(rollouts)
        assert len(exp) == (12 if layout == "turn" else 4)
        trainer.compute_advantages(exp, rows)
        got = {}
        for b, row in enumerate(rows):
            for k, r in enumerate(row):
                sel = exp.turn_ids[b] == k
                got[(r.info["dialogue_id"], r.info["turn"])] = (exp.old_logprobs[b, sel], exp.old_values[b, sel],
                                                                exp.advantages[b, sel])
        per_turn[layout] = got
        with torch.no_grad():
            losses[layout] = trainer._loss(exp)[1]
    assert per_turn["turn"].keys() == per_turn["speaker"].keys()
    for key, (lp, v, a) in per_turn["turn"].items():
        lp2, v2, a2 = per_turn["speaker"][key]
        torch.testing.assert_close(lp2, lp, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(v2, v, atol=2e-5, rtol=1e-4)
        if estimator == "gae":  # per-turn GAE: the same advantages; turn_gae bootstraps across an episode's turns
            torch.testing.assert_close(a2, a, atol=2e-4, rtol=1e-4)
    if estimator == "gae":
        for name in ("loss/policy", "loss/value", "loss/total"):
            assert float(losses["speaker"][name]) == pytest.approx(float(losses["turn"][name]), rel=1e-4, abs=1e-6)


def test_logprobs_are_taken_at_the_sampling_temperature(policy):
    trainer = PPOTrainer(PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=1), copy.deepcopy(policy))
    q, r = [10, 11, 12], [13, 14]
    exp, _ = trainer.make_experience([Rollout(q, r, score=1.0, temperature=0.5)])
    with torch.no_grad():
        logits = (trainer.policy.lm(input_ids=torch.tensor([q + r])).logits[0] / 0.5).log_softmax(-1)
    assert exp.old_logprobs[0].tolist() == pytest.approx([logits[2, 13].item(), logits[3, 14].item()], abs=1e-4)


def _group_rollouts():
    # two groups of two rollouts (same pair, turn, speaker), one token each
    return [Rollout([1, 2], [3], score=1.0, group="g"), Rollout([1, 2], [4], score=3.0, group="g"),
            Rollout([1, 2], [5], score=0.0, group="h"), Rollout([1, 2], [6], score=4.0, group="h")]


@pytest.mark.parametrize("algo, expected", [("reinforce", [-1.0, 1.0, -2.0, 2.0]), ("rloo", [-2.0, 2.0, -4.0, 4.0]),
                                            ("grpo", [-1.0, 1.0, -1.0, 1.0])])
def test_critic_free_advantages(tiny_model_dir, algo, expected):
    policy = Transmitter.from_pretrained(str(tiny_model_dir))
    cfg = PPOConfig(algo=algo, pairs_per_step=1, rollouts_per_pair=2, max_steps=1, num_ppo_epochs=1,
                    whiten_advantages=False, kl_coef=0.0)
    trainer = PPOTrainer(cfg, policy)
    exp, rows = trainer.make_experience(_group_rollouts())
    trainer.compute_advantages(exp, rows)
    assert exp.advantages[:, 0].tolist() == pytest.approx(expected, rel=1e-4)
    stats = trainer.step(_group_rollouts())
    assert "loss/value" not in stats and torch.isfinite(torch.tensor(stats["loss/policy"]))


def test_reinforce_is_the_plain_policy_gradient_and_grpo_adds_the_kl(tiny_model_dir):
    policy = Transmitter.from_pretrained(str(tiny_model_dir))
    cfg = PPOConfig(algo="reinforce", pairs_per_step=1, rollouts_per_pair=2, max_steps=1, num_ppo_epochs=1,
                    whiten_advantages=False, kl_coef=0.0)
    trainer = PPOTrainer(cfg, policy)
    exp, rows = trainer.make_experience(_group_rollouts())
    trainer.compute_advantages(exp, rows)
    with torch.no_grad():
        loss, _ = trainer._loss(exp)
    expected = -(exp.advantages * exp.old_logprobs * exp.response_mask).sum() / exp.response_mask.sum()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    ref = Transmitter.from_pretrained(str(tiny_model_dir))
    torch.nn.init.normal_(ref.lm.lm_head.weight, std=0.1)  # a reference that differs from the policy
    grpo = PPOTrainer(PPOConfig(algo="grpo", pairs_per_step=1, rollouts_per_pair=2, max_steps=1, kl_coef=0.1,
                                whiten_advantages=False),
                      Transmitter.from_pretrained(str(tiny_model_dir)), ref_policy=ref)
    exp, rows = grpo.make_experience(_group_rollouts())
    grpo.compute_advantages(exp, rows)
    assert exp.advantages[:, 0].tolist() == pytest.approx([-1.0, 1.0, -1.0, 1.0], rel=1e-3)  # KL not in the reward
    with torch.no_grad():
        _, stats = grpo._loss(exp)
    log_rho = exp.ref_logprobs - exp.old_logprobs
    k3 = ((torch.expm1(log_rho) - log_rho) * exp.response_mask).sum() / exp.response_mask.sum()
    assert float(stats["loss/kl"]) == pytest.approx(float(k3), rel=1e-4) and float(k3) > 0
