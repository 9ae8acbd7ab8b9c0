"""One frozen forward for the reference and the fluency reward: the memo gives the separate forward's values."""

import copy

import pytest
import torch

from models.scoring.scorers import LMScorer, LogprobMemo
from rewards.fluency import FluencyReward
from rl.config import PPOConfig
from rl.forward import memo_or_forward
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import PromptFormatter, Transmitter
from tests.rl.test_episodes import PERSONA, TURNS, dialogue_rollouts


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    torch.manual_seed(0)
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    ref = Transmitter.from_pretrained(str(tiny_model_dir)).eval().requires_grad_(False)
    return policy, ref


def rollouts(fmt, temperature=1.0):
    rs = dialogue_rollouts(fmt, "p0#0", temperature=temperature) + dialogue_rollouts(fmt, "p0#1", temperature=temperature)
    for r in rs:
        t = r.info["turn"]
        r.info.update(persona=PERSONA["AB"[t % 2]], history=TURNS[:t])
    return rs


def score_fluency(ref, fmt, rs, memo):
    reward = FluencyReward(LMScorer(ref, ref.tokenizer, memo=memo), formatter=fmt, condition_on_context=True)
    return reward([r.prompt_text for r in rs], [TURNS[r.info["turn"]] for r in rs],
                  persona=[r.info["persona"] for r in rs], history=[r.info["history"] for r in rs])


def reference_logprobs(policy, ref, rs, layout, memo):
    cfg = PPOConfig(episode_layout=layout, pairs_per_step=1, rollouts_per_pair=2, max_steps=1, kl_coef=0.05)
    trainer = PPOTrainer(cfg, copy.deepcopy(policy), ref_policy=ref)
    trainer.ref_memo = memo
    exp, _ = trainer.make_experience(rs)
    return exp


@pytest.mark.parametrize("layout", ["turn", "speaker"])
def test_reference_logprobs_read_from_the_fluency_forward_equal_a_separate_forward(models, layout):
    policy, ref = models
    fmt = PromptFormatter(ref.tokenizer, max_history_tokens=1000)
    rs = rollouts(fmt)
    separate = reference_logprobs(policy, ref, rs, layout, memo=None)
    memo = LogprobMemo()
    score_fluency(ref, fmt, rs, memo)
    assert len(memo) > 0
    calls = []
    forward = ref.forward
    ref.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    try:
        shared = reference_logprobs(policy, ref, rs, layout, memo)
    finally:
        del ref.forward
    assert not calls, "every row was in the memo: the reference ran no forward"
    assert len(memo) == 0, "make_experience empties the memo for the next step"
    mask = separate.response_mask.bool()
    torch.testing.assert_close(shared.ref_logprobs[mask], separate.ref_logprobs[mask], atol=1e-5, rtol=1e-5)


def test_rows_missing_from_the_memo_or_at_another_temperature_run_the_forward(models):
    policy, ref = models
    fmt = PromptFormatter(ref.tokenizer, max_history_tokens=1000)
    rs = rollouts(fmt)
    cfg = PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=1)
    trainer = PPOTrainer(cfg, copy.deepcopy(policy), ref_policy=ref)
    exp, _ = trainer.make_experience(rs)
    memo = LogprobMemo()
    score_fluency(ref, fmt, rs[:4], memo)  # turns 0-3 (both dialogues have the same text, so both hit)
    seen = []

    def forward(part):
        seen.append(len(part))
        return trainer._forward(ref, part, with_values=False)[0]

    got = memo_or_forward(memo, exp, forward)
    assert seen == [sum(r.info["turn"] >= 4 for r in rs)] == [4]
    mask = exp.response_mask.bool()
    torch.testing.assert_close(got[mask], exp.ref_logprobs[mask], atol=1e-5, rtol=1e-5)
    exp.temperature[:] = 0.7
    seen.clear()
    memo_or_forward(memo, exp, forward)
    assert seen == [len(exp)]


def test_a_sample_inside_a_longer_one_is_scored_in_its_pass_with_the_same_logprobs(models):
    _, ref = models
    fmt = PromptFormatter(ref.tokenizer, max_history_tokens=1000)
    rs = rollouts(fmt)[:6]
    prefixes, targets = [r.query_ids for r in rs], [r.response_ids for r in rs]
    scorer = LMScorer(ref, ref.tokenizer)
    passes = []
    span_logprobs = scorer.span_logprobs
    scorer.span_logprobs = lambda seqs, spans: passes.append(len(seqs)) or span_logprobs(seqs, spans)
    merged = scorer.token_logprobs(prefixes, targets)
    assert passes == [2], "one sequence per speaker: each speaker's turns begin its last one"
    alone = [span_logprobs([list(p) + list(t)], [[(len(p), len(p) + len(t))]])[0][0] for p, t in zip(prefixes, targets)]
    for a, b in zip(merged, alone):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_memo_lookup_needs_the_same_tokens_up_to_the_spans_end():
    memo = LogprobMemo()
    memo.add([1, 2, 3, 4, 5], 2, 5, torch.tensor([-0.3, -0.4, -0.5]))
    assert memo.lookup([1, 2, 3, 4, 9, 9], 3, 4).tolist() == pytest.approx([-0.4])
    assert memo.lookup([1, 2, 3, 4, 5], 1, 3) is None  # token 1 was not scored
    assert memo.lookup([1, 7, 3, 4, 5], 2, 5) is None  # another context
    assert memo.lookup([1, 2, 3, 4, 5, 6], 2, 6) is None  # past the recorded end
    memo.add([1], 1, 1, torch.empty(0))
    assert len(memo) == 1
