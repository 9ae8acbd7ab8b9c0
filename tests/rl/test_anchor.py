import pytest
import torch

from models.prompting.prompt import PromptFormatter
from rl.anchor import persona_anchor_rollouts
from rl.config import PPOConfig
from rl.experience import Rollout, collate
from rl.losses import anchor_loss
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import Transmitter

PERSONA = ["i live in alabama.", "i am a mechanical engineer."]
OTHER = ["i love jazz.", "my dog is named rex."]


def test_anchor_loss_is_zero_until_the_policy_finds_a_sentence_likelier_than_the_reference():
    ref = torch.tensor([[-2.0, -3.0, 0.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, stats = anchor_loss(ref - 0.5, ref, mask)  # every sentence less likely than under the reference
    assert loss.item() == 0.0 and stats["anchor/active"].item() == 0.0
    policy = ref.clone()
    policy[0, :2] += torch.tensor([1.0, 0.5])  # row 0 rises by 1.5 nats (the padded column does not count)
    policy[0, 2] += 100.0
    policy[1] -= 0.2  # row 1 falls by 0.6
    loss, stats = anchor_loss(policy, ref, mask)
    assert loss.item() == pytest.approx(1.5 / 2)  # the hinge, averaged over both rows
    assert stats["anchor/logratio"].item() == pytest.approx((1.5 - 0.6) / 2)
    assert stats["anchor/active"].item() == 0.5


def _rollout(persona, turn, query, trainable=True, score=1.0):
    return Rollout(query, [9], score=score, trainable=trainable, info={"persona": persona, "turn": turn})


def test_anchor_rows_are_each_persona_sentence_after_one_trained_context_taken_in_turn():
    rollouts = [_rollout(PERSONA, 0, [1]), _rollout(OTHER, 1, [2]), _rollout(PERSONA, 2, [3]),
                _rollout(OTHER, 3, [4], trainable=False), _rollout(OTHER, 3, [5], score=None)]
    encode = lambda text: [len(text)]  # noqa: E731
    for step, persona_ctx in ((0, [1]), (1, [3]), (2, [1])):
        rows = persona_anchor_rollouts(rollouts, encode, step)
        assert [r.info["persona_sentence"] for r in rows] == PERSONA + OTHER
        assert [r.query_ids for r in rows] == [persona_ctx] * 2 + [[2]] * 2  # untrained/unscored turns are no context
        assert [r.response_ids for r in rows] == [[len(s)] for s in PERSONA + OTHER]
    assert persona_anchor_rollouts([Rollout([1], [2], score=1.0)], encode) == []  # not self-play: no rows


def test_anchor_needs_a_reference_and_a_non_negative_weight(tiny_model_dir):
    with pytest.raises(ValueError, match="persona_anchor_coef"):
        PPOConfig(persona_anchor_coef=-1.0)
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    with pytest.raises(ValueError, match="reference"):
        PPOTrainer(PPOConfig(persona_anchor_coef=1.0, pairs_per_step=1, rollouts_per_pair=2, max_steps=1), policy)


def _sentence_rise(trainer, ref, query, sentence_ids):
    """Σ log π(sentence | query) - Σ log π_ref(sentence | query)."""
    exp = collate([Rollout(query, sentence_ids, score=0.0)], trainer.pad_token_id)
    with torch.no_grad():
        return float((trainer._forward(trainer.model, exp, False)[0] - trainer._forward(ref, exp, False)[0]).sum())


@pytest.mark.parametrize("coef", [0.0, 1.0])
def test_anchor_holds_a_rewarded_persona_sentence_at_the_reference_likelihood(tiny_model_dir, smollm2_tokenizer, coef):
    """A persona sentence said as the response and rewarded over another response: PPO alone makes it much
    likelier than the reference does; with the anchor its rise stays a fraction of that."""
    torch.manual_seed(0)
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    ref = Transmitter.from_pretrained(str(tiny_model_dir))
    fmt = PromptFormatter(smollm2_tokenizer)
    cfg = PPOConfig(learning_rate=1e-2, kl_coef=0.0, num_ppo_epochs=2, pairs_per_step=1, rollouts_per_pair=2,
                    max_steps=6, persona_anchor_coef=coef)
    trainer = PPOTrainer(cfg, policy, ref, formatter=fmt)
    query = fmt.encode_context(PERSONA, ["hi, where are you from?"])
    copy = fmt.encode_response(PERSONA[0])[:-1]
    other = fmt.encode_response("i am from the north.")[:-1]
    rollouts = [Rollout(query, copy, score=1.0, info={"persona": PERSONA}),
                Rollout(query, other, score=0.0, info={"persona": PERSONA})]
    stats = [trainer.step(rollouts) for _ in range(cfg.max_steps)]
    rise = _sentence_rise(trainer, ref, query, copy)
    if coef == 0.0:
        assert "loss/anchor" not in stats[-1]
        assert rise > 5.0, rise
    else:
        assert stats[-1]["loss/anchor"] >= 0.0 and "anchor/logratio" in stats[-1]
        assert rise < 2.0, rise


def test_anchor_reference_runs_in_one_chunk_per_micro_batch_and_matches_one_forward(tiny_model_dir, smollm2_tokenizer):
    """With 2 micro-batches the reference sees the anchor rows in 2 forwards, and their log-probs are those of one
    forward over all rows (row order and padding kept)."""
    torch.manual_seed(0)
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    ref = Transmitter.from_pretrained(str(tiny_model_dir))
    fmt = PromptFormatter(smollm2_tokenizer)
    cfg = PPOConfig(pairs_per_step=2, rollouts_per_pair=1, gradient_accumulation_steps=2, max_steps=1,
                    persona_anchor_coef=1.0)
    trainer = PPOTrainer(cfg, policy, ref, formatter=fmt)
    rollouts = [Rollout(fmt.encode_context(p, ["hi!"]), [5, 6], score=1.0, info={"persona": p}) for p in (PERSONA, OTHER)]
    calls = []
    forward = ref.forward
    ref.forward = lambda *a, **k: calls.append(k["input_ids"].shape[0]) or forward(*a, **k)
    exp = trainer._anchor_experience(rollouts)
    ref.forward = forward
    assert calls == [2, 2]  # 4 rows (2 personas x 2 sentences) in 2 chunks
    with torch.no_grad():
        whole = trainer._forward(ref, exp, with_values=False)[0]
    torch.testing.assert_close(exp.ref_logprobs, whole)
    assert exp.ref_logprobs.shape == exp.response_mask.shape
