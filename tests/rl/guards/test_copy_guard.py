import pytest
import torch

from models.prompting.prompt import PromptFormatter
from models.scoring.text_metrics import copies_persona
from rl.config import PPOConfig
from rl.experience import Rollout, collate
from rl.guards.copy_guard import CopyGuard, missing_copy_words, words_to_copy
from rl.losses import copy_unlikelihood_loss
from rl.trainer import PPOTrainer
from tests.rl.rl_fixtures import Transmitter

PERSONA = ["I live in colorado.", "My favorite activity is rock climbing.", "I am an electrician."]


def test_words_to_copy_follows_the_evaluation_rule():
    # 80% of 2, 3, 4, 5 content words: every word up to 4, then 4 of 5
    assert [words_to_copy(set("abcde"[:k]), 0.8) for k in (2, 3, 4, 5)] == [2, 3, 4, 4]
    for k in (2, 3, 4, 5):
        need = words_to_copy(set(range(k)), 0.8)
        assert need / k >= 0.8 and (need - 1) / k < 0.8


def test_missing_words_are_those_one_word_short_of_a_copy():
    assert missing_copy_words(set(), PERSONA) == set()  # nothing said: no sentence is one word short
    assert missing_copy_words({"live"}, PERSONA) == {"colorado"}
    assert missing_copy_words({"favorite", "rock", "climbing"}, PERSONA) == {"activity"}
    assert missing_copy_words({"rock", "climbing"}, PERSONA) == set()  # two words short: a mention, not a copy
    assert missing_copy_words({"electrician"}, PERSONA) == set()  # one-word sentences are never copies
    assert missing_copy_words({"live", "colorado", "favorite", "rock", "climbing"}, PERSONA) == set()  # copied already


def test_candidates_are_the_completing_word_starts_at_each_position(smollm2_tokenizer):
    guard = CopyGuard(smollm2_tokenizer)
    text = "I live in Colorado, and I like to climb."
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
    cands = guard.candidates(ids, PERSONA)
    assert len(cands) == len(ids)
    colorado = smollm2_tokenizer.encode(" Colorado", add_special_tokens=False)[0]
    lower = smollm2_tokenizer.encode(" colorado", add_special_tokens=False)[0]
    guarded = [t for t, c in enumerate(cands) if c]
    # guarded from the token after "live" until "Colorado" is said: exactly where the next word could complete it
    prefixes = [smollm2_tokenizer.decode(ids[:t]) for t in guarded]
    assert prefixes[0] == "I live" and all("Colorado" not in p for p in prefixes)
    assert all({colorado, lower} <= cands[t] for t in guarded)
    said = smollm2_tokenizer.decode(ids[:guarded[-1] + 2])
    assert copies_persona(said, PERSONA)  # ...and the sampled text did complete the copy there
    # a reworded mention is never one word short: nothing to guard
    other = smollm2_tokenizer.encode("I'm from Denver and I climb rocks a lot.", add_special_tokens=False)
    assert not any(guard.candidates(other, PERSONA))


def test_unlikelihood_is_minus_log_of_the_mass_left_off_the_completing_tokens():
    logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens
    cands = torch.tensor([[[1, 2], [-1, -1], [3, -1]]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # position 2 is padding: not guarded
    loss, stats = copy_unlikelihood_loss(logits, cands, mask)
    assert loss.item() == pytest.approx(-torch.log(torch.tensor(0.5)).item())  # only position 0: 2 of 4 tokens
    assert stats["copy_guard/positions"].item() == 1.0 and stats["copy_guard/prob"].item() == pytest.approx(0.5)
    none, _ = copy_unlikelihood_loss(logits, torch.full((1, 3, 1), -1), mask)
    assert none.item() == 0.0
    logits.requires_grad_(True)
    copy_unlikelihood_loss(logits, cands, mask)[0].backward()
    assert logits.grad[0, 0, 1] > 0 and logits.grad[0, 0, 0] < 0  # lowers the completing tokens, raises the rest
    assert logits.grad[0, 1:].abs().sum() == 0


def test_copy_guard_config_is_checked():
    with pytest.raises(ValueError, match="copy_guard_coef"):
        PPOConfig(copy_guard_coef=-1.0)
    with pytest.raises(ValueError, match="copy_guard_threshold"):
        PPOConfig(copy_guard_threshold=0.0)


def _completion_prob(trainer, query, prefix, targets):
    exp = collate([Rollout(query, prefix + [min(targets)], score=0.0)], trainer.pad_token_id)
    with torch.no_grad():
        logits = trainer._forward(trainer.model, exp, False, with_logits=True)[3]
    return float(logits[0, len(prefix)].softmax(-1)[sorted(targets)].sum())


@pytest.mark.parametrize("coef", [0.0, 10.0])
def test_copy_guard_keeps_a_rewarded_copy_from_becoming_likely(tiny_model_dir, smollm2_tokenizer, coef):
    """A copied persona sentence rewarded over a reworded one: PPO alone makes the completing word likely after
    "I live in"; with the guard it stays far less likely."""
    torch.manual_seed(0)
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    fmt = PromptFormatter(smollm2_tokenizer)
    cfg = PPOConfig(learning_rate=1e-2, kl_coef=0.0, num_ppo_epochs=2, pairs_per_step=1, rollouts_per_pair=2,
                    max_steps=6, copy_guard_coef=coef)
    trainer = PPOTrainer(cfg, policy)
    query = fmt.encode_context(PERSONA, ["hi, where are you from?"])
    prefix = smollm2_tokenizer.encode("I live in", add_special_tokens=False)
    copy = prefix + smollm2_tokenizer.encode(" Colorado.", add_special_tokens=False)
    other = smollm2_tokenizer.encode("I am from the mountains.", add_special_tokens=False)
    rollouts = [Rollout(query, copy, score=1.0, info={"persona": PERSONA}),
                Rollout(query, other, score=0.0, info={"persona": PERSONA})]
    targets = CopyGuard(smollm2_tokenizer).candidates(copy, PERSONA)[len(prefix)]
    assert copy[len(prefix)] in targets
    stats = [trainer.step(rollouts) for _ in range(cfg.max_steps)]
    prob = _completion_prob(trainer, query, prefix, targets)
    if coef == 0.0:
        assert "loss/copy_guard" not in stats[-1]
        assert prob > 0.02, prob  # from 1e-4
    else:
        assert stats[-1]["copy_guard/positions"] > 0
        assert prob < 0.01, prob


def test_candidates_follow_each_rows_own_turns_in_both_layouts(tiny_model_dir, smollm2_tokenizer):
    """A speaker row's turns lie end to end in the response columns: the guard's tokens follow them, and an
    unscored turn or a rollout without a persona is never guarded."""
    policy = Transmitter.from_pretrained(str(tiny_model_dir), with_value_head=True)
    fmt = PromptFormatter(smollm2_tokenizer)
    guard = CopyGuard(smollm2_tokenizer)
    enc = lambda t: smollm2_tokenizer.encode(t, add_special_tokens=False)  # noqa: E731
    first, second = enc("I live in Colorado."), enc("My favorite activity is rock climbing!")
    query = fmt.encode_context(PERSONA, ["hi!"])
    info = {"persona": PERSONA, "dialogue_id": "d", "speaker": "A"}
    r1 = Rollout(query, first, score=1.0, info=dict(info, turn=0))
    r2 = Rollout(query + first + enc(" ok."), second, score=1.0, info=dict(info, turn=2))
    unscored = Rollout(query, first, score=None, info=dict(info, turn=0, dialogue_id="e"))
    bare = Rollout(query, first, score=1.0)
    for layout in ("turn", "speaker"):
        trainer = PPOTrainer(PPOConfig(pairs_per_step=1, rollouts_per_pair=2, max_steps=1, copy_guard_coef=1.0,
                                       episode_layout=layout), policy)
        exp, rows = trainer.make_experience([r1, r2, unscored, bare])
        assert exp.aux["copy_guard"].shape[:2] == exp.response_ids.shape
        for b, row in enumerate(rows):
            want = [c if r.score is not None and r.info.get("persona") else set()
                    for r in row for c in guard.candidates(r.response_ids, PERSONA)]
            got = [{int(i) for i in exp.aux["copy_guard"][b, t] if i >= 0} for t in range(exp.response_ids.shape[1])]
            assert got == want + [set()] * (len(got) - len(want))
        assert (exp.aux["copy_guard"] >= 0).any()
        assert max(len(row) for row in rows) == (2 if layout == "speaker" else 1)  # r1 and r2 chain into one row
