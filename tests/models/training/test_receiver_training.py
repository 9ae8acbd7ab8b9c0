import json
import os
import random

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from data_prep import PersonaDialogue, build_receiver_examples, read_dialogues, sample_data_path
from models.loading.embedded import embedded_receiver_path
from models.networks.receiver import Receiver
from models.scoring.lexical import LexicalScorer, content_words, jaccard, lexical_persona_score
from models.training import receiver_training
from models.training.receiver_training import (
    CHECKPOINT_DIR,
    ReceiverTrainer,
    ReceiverTrainingConfig,
    attention_entropy,
    evaluate_ranking,
    margin_ranking_loss,
    receiver_score_fn,
)

HOBBIES = ["hiking", "chess", "jazz", "baking", "surfing", "painting", "fishing", "gardening", "poetry", "karate",
           "cycling", "pottery", "skiing", "knitting", "tennis", "opera"]
JOBS = ["nurse", "pilot", "chef", "farmer", "lawyer", "teacher", "plumber", "dentist", "baker", "miner", "judge",
        "actor", "singer", "sailor", "banker", "writer"]


def toy_dialogues(n: int = 16) -> list[PersonaDialogue]:
    out = []
    for i in range(n):
        a = [f"i love {HOBBIES[i % 16]}.", f"i work as a {JOBS[i % 16]}."]
        b = [f"i love {HOBBIES[(i + 5) % 16]}.", f"i work as a {JOBS[(i + 7) % 16]}."]
        turns = [f"hi! {HOBBIES[i % 16]} is my weekend passion", f"nice, i am a {JOBS[(i + 7) % 16]} by trade",
                 f"being a {JOBS[i % 16]} is tiring", f"i relax with {HOBBIES[(i + 5) % 16]}"]
        out.append(PersonaDialogue(a, b, turns, dialogue_id=f"toy:{i}"))
    return out


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(embedded_receiver_path())


def tiny_receiver(tokenizer, temperature=0.5) -> Receiver:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return Receiver(BertModel(cfg), tokenizer, temperature=temperature)


# --- pure functions ---
def test_margin_ranking_loss_hand_computed():
    loss, stats = margin_ranking_loss(torch.tensor([1.0]), torch.tensor([[0.8, 2.0]]), margin=0.5)
    assert loss.item() == pytest.approx((0.3 + 1.5) / 2)  # max(0, .5 − .2), max(0, .5 + 1)
    assert stats["score/accuracy"] == 0.5


def test_attention_entropy_is_normalised_and_ignores_padding():
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    uniform = torch.tensor([[0.25] * 4, [0.5, 0.5, 0.0, 0.0]])
    assert attention_entropy(uniform, mask)[0].item() == pytest.approx(1.0)
    one_hot = torch.tensor([[1.0, 0, 0, 0], [0.0, 1.0, 0, 0]])
    assert attention_entropy(one_hot, mask)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_lexical_scorer():
    assert content_words("I really love my Dogs, and hiking!") == {"love", "dog", "hiking"}
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert lexical_persona_score("my dogs love hiking", ["i have two dogs.", "i love hiking."]) == pytest.approx(2 / 3)
    rows = build_receiver_examples(toy_dialogues(), num_negatives=5, seed=1).to_list()
    m = evaluate_ranking(LexicalScorer().score, rows)
    assert m["num_candidates"] == 6 and m["hits@1"] > 0.5  # the toy turns repeat persona words


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="temperature"):
        ReceiverTrainingConfig(temperature=0)
    with pytest.raises(ValueError, match="warmup_ratio"):
        ReceiverTrainingConfig(warmup_ratio=1.0)


# --- one step's forward ---
def test_batch_loss_chunking_changes_nothing(tokenizer):
    rows = build_receiver_examples(toy_dialogues(), num_negatives=2).to_list()[:6]
    receiver = tiny_receiver(tokenizer).eval()
    grads = []
    for chunk in (64, 2):
        receiver.zero_grad()
        loss, _ = receiver_training.batch_loss(receiver, receiver, rows, ReceiverTrainingConfig(encode_batch_size=chunk), "cpu")
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in receiver.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads[0][1], grads[1][1]))


def test_in_batch_negatives_skip_personas_sharing_a_sentence(tokenizer):
    """Rows of different dialogues whose personas share a sentence are not each other's negatives."""
    shared = "i have a dog."
    dialogues = [PersonaDialogue([shared, f"i love {HOBBIES[i]}."], [f"i work as a {JOBS[i]}."],
                                 [f"my dog likes {HOBBIES[i]}", "ok"], dialogue_id=f"d{i}") for i in range(4)]
    dialogues += toy_dialogues(4)
    rows = [r for r in build_receiver_examples(dialogues, num_negatives=1).to_list() if shared in r["persona"]]
    assert len({r["dialogue_id"] for r in rows}) == 4
    receiver = tiny_receiver(tokenizer).eval()
    with_in_batch = receiver_training.batch_loss(receiver, receiver, rows, ReceiverTrainingConfig(), "cpu")[0]
    without = receiver_training.batch_loss(receiver, receiver, rows, ReceiverTrainingConfig(in_batch_negatives=False), "cpu")[0]
    assert torch.allclose(with_in_batch, without)  # every in-batch candidate shares the dog sentence: all masked


def test_in_batch_negatives_skip_a_shared_sentence_written_differently(tokenizer):
    """The same fact in another case, punctuation or spacing is the same sentence (``data_prep.personas``)."""
    spellings = ["i have a dog.", "I have a dog", "i  have a DOG!", "I have a dog ."]
    dialogues = [PersonaDialogue([spellings[i], f"i love {HOBBIES[i]}."], [f"i work as a {JOBS[i]}."],
                                 [f"my dog likes {HOBBIES[i]}", "ok"], dialogue_id=f"d{i}") for i in range(4)]
    dialogues += toy_dialogues(4)
    rows = [r for r in build_receiver_examples(dialogues, num_negatives=1).to_list()
            if r["dialogue_id"].startswith("d") and r["turn_index"] == 0]
    assert len({r["persona"][0] for r in rows}) == 4
    receiver = tiny_receiver(tokenizer).eval()
    with_in_batch = receiver_training.batch_loss(receiver, receiver, rows, ReceiverTrainingConfig(), "cpu")[0]
    without = receiver_training.batch_loss(receiver, receiver, rows, ReceiverTrainingConfig(in_batch_negatives=False), "cpu")[0]
    assert torch.allclose(with_in_batch, without)


def test_in_batch_negatives_add_the_other_rows_personas_to_the_margin_loss(tokenizer):
    """Two rows of different dialogues, disjoint personas: with in-batch negatives the loss is the margin loss over
    each row's own negative and the other row's persona (4 terms), without it over the own negatives (2 terms)."""
    rows = [r for r in build_receiver_examples(toy_dialogues(4), num_negatives=1).to_list() if r["turn_index"] == 0][:2]
    assert rows[0]["dialogue_id"] != rows[1]["dialogue_id"] and not set(rows[0]["persona"]) & set(rows[1]["persona"])
    receiver = tiny_receiver(tokenizer, temperature=0.5).eval()
    margin = 10.0  # larger than any score gap: every hinge is active, so each term is margin − gap
    with torch.no_grad():
        def s(utterance, persona):
            return float(receiver.score([utterance], [list(persona)]).scores[0])

        pos = [s(r["utterance"], r["persona"]) for r in rows]
        own_neg = [s(r["utterance"], r["negative_personas"][0]) for r in rows]
        cross = [s(rows[0]["utterance"], rows[1]["persona"]), s(rows[1]["utterance"], rows[0]["persona"])]
        kw = dict(margin=margin, sparsity_coef=0.0, temperature=0.5)
        with_in_batch = receiver_training.batch_loss(receiver, receiver, rows, ReceiverTrainingConfig(**kw), "cpu")
        without = receiver_training.batch_loss(receiver, receiver, rows,
                                               ReceiverTrainingConfig(in_batch_negatives=False, **kw), "cpu")
    hinge = [margin - (pos[b] - n) for b, n in ((0, own_neg[0]), (1, own_neg[1]))]
    in_batch = [margin - (pos[b] - cross[b]) for b in (0, 1)]
    assert without[0].item() == pytest.approx(sum(hinge) / 2, abs=1e-4)
    assert with_in_batch[0].item() == pytest.approx((sum(hinge) + sum(in_batch)) / 4, abs=1e-4)
    assert abs(sum(in_batch) / 2 - sum(hinge) / 2) > 1e-3  # the two losses differ by more than the tolerance
    expected_gap = (sum(pos[b] - n for b, n in zip((0, 1, 0, 1), own_neg + cross))) / 4
    assert with_in_batch[1]["score/gap"] == pytest.approx(expected_gap, abs=1e-4)


# --- trainer on a tiny model ---
def _cfg(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-3,
                logging_steps=1, save_steps=2, temperature=0.5, use_cpu=True)
    return ReceiverTrainingConfig(**{**base, **kw})


def test_training_lowers_the_loss_on_toy_data(tokenizer, tmp_path):
    rows = build_receiver_examples(toy_dialogues(), num_negatives=1).to_list()
    receiver = tiny_receiver(tokenizer)
    trainer = ReceiverTrainer(receiver, _cfg(tmp_path, max_steps=30, save_steps=0, logging_steps=10), rows, rows)
    result = trainer.train()
    losses = [h["loss/total"] for h in trainer.history if "loss/total" in h]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert result["steps"] == 30 and "hits@1" in result["final_eval"]
    assert (tmp_path / "run" / CHECKPOINT_DIR / "trainer_state.json").is_file()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 30 and "eval/mrr" in log[-1]


def test_resume_reproduces_an_uninterrupted_run(tokenizer, tmp_path, monkeypatch):
    rows = build_receiver_examples(toy_dialogues(), num_negatives=1).to_list()
    straight = tiny_receiver(tokenizer)
    ReceiverTrainer(straight, _cfg(tmp_path / "a", max_steps=4), rows).train()

    real_batch_loss = receiver_training.batch_loss

    def crash_at_step_3(model, *args):
        if crashing.step == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_batch_loss(model, *args)

    interrupted = tiny_receiver(tokenizer)
    crashing = ReceiverTrainer(interrupted, _cfg(tmp_path / "b", max_steps=4), rows)
    monkeypatch.setattr(receiver_training, "batch_loss", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    monkeypatch.undo()
    state = json.loads((tmp_path / "b" / "run" / CHECKPOINT_DIR / "trainer_state.json").read_text())
    assert state["step"] == 2
    assert not [p for p in os.listdir(tmp_path / "b" / "run") if p.startswith(".")]  # temp dirs renamed away
    resumed = tiny_receiver(tokenizer)  # fresh weights: everything must come from the checkpoint
    trainer = ReceiverTrainer(resumed, _cfg(tmp_path / "b", max_steps=4, resume=True), rows)
    trainer.train()
    assert trainer.step == 4
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name


CHECKPOINT_FILES = {"model.safetensors", "optimizer.bin", "scheduler.json", "rng_state_0.safetensors", "trainer_state.json"}


def test_checkpoint_swap_never_leaves_no_checkpoint(tokenizer, tmp_path, monkeypatch):
    """At every rename, fsync and delete of a re-save, ``checkpoint`` holds a whole old or new checkpoint."""
    from tests.models.fs_hooks import check_around_fs_ops

    rows = build_receiver_examples(toy_dialogues(), num_negatives=1).to_list()
    trainer = ReceiverTrainer(tiny_receiver(tokenizer), _cfg(tmp_path, max_steps=2, save_steps=1), rows)
    trainer.train()
    ckpt, seen = tmp_path / "run" / CHECKPOINT_DIR, []

    def complete():
        assert {p.name for p in ckpt.iterdir()} >= CHECKPOINT_FILES, sorted(p.name for p in ckpt.iterdir())
        seen.append(json.loads((ckpt / "trainer_state.json").read_text())["step"])

    check_around_fs_ops(monkeypatch, complete)
    trainer.step = 3
    trainer.save_checkpoint()
    monkeypatch.undo()
    assert set(seen) == {2, 3} and seen[-1] == 3 and len(seen) > 10


def test_resume_never_restarts_silently(tokenizer, tmp_path, capsys):
    rows = build_receiver_examples(toy_dialogues(), num_negatives=1).to_list()
    trainer = ReceiverTrainer(tiny_receiver(tokenizer), _cfg(tmp_path, max_steps=1, resume=True), rows)
    trainer.train()
    assert "no checkpoint in" in capsys.readouterr().out  # a first run with --resume says it starts afresh
    ckpt = tmp_path / "run" / CHECKPOINT_DIR
    (ckpt / "trainer_state.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete Receiver checkpoint"):
        ReceiverTrainer(tiny_receiver(tokenizer), _cfg(tmp_path, max_steps=2, resume=True), rows).train()
    (ckpt / "trainer_state.json").write_text('{"step": 1}')
    (ckpt / "custom_checkpoint_0.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match="pickled the scheduler"):
        ReceiverTrainer(tiny_receiver(tokenizer), _cfg(tmp_path, max_steps=2, resume=True), rows).train()


def test_resume_logs_each_step_once(tokenizer, tmp_path, monkeypatch):
    """Steps logged after the last checkpoint are dropped on resume and logged again, with the same values."""
    rows = build_receiver_examples(toy_dialogues(), num_negatives=1).to_list()
    ReceiverTrainer(tiny_receiver(tokenizer), _cfg(tmp_path / "a", max_steps=4, save_steps=2), rows).train()
    real_batch_loss = receiver_training.batch_loss

    def crash_in_step_4(model, *args):
        if crashing.step == 3:  # step 3 is logged, its checkpoint not written
            raise KeyboardInterrupt("simulated crash")
        return real_batch_loss(model, *args)

    crashing = ReceiverTrainer(tiny_receiver(tokenizer), _cfg(tmp_path / "b", max_steps=4, save_steps=2), rows)
    monkeypatch.setattr(receiver_training, "batch_loss", crash_in_step_4)
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    monkeypatch.undo()
    log_b = tmp_path / "b" / "run" / "log.jsonl"
    assert [json.loads(x)["step"] for x in log_b.read_text().splitlines()] == [1, 2, 3]
    ReceiverTrainer(tiny_receiver(tokenizer), _cfg(tmp_path / "b", max_steps=4, save_steps=2, resume=True), rows).train()
    log_a = (tmp_path / "a" / "run" / "log.jsonl").read_text().splitlines()
    assert log_b.read_text().splitlines() == log_a and len(log_a) == 4


def test_save_model_round_trip(tokenizer, tmp_path):
    rows = build_receiver_examples(toy_dialogues(), num_negatives=1).to_list()
    receiver = tiny_receiver(tokenizer)
    trainer = ReceiverTrainer(receiver, _cfg(tmp_path, max_steps=2, save_steps=0), rows)
    trainer.train()
    path = trainer.save_model(tmp_path / "model")
    texts = ["i love jazz", "being a pilot is tiring"]
    assert torch.equal(Receiver.from_pretrained(path).embed(texts), receiver.embed(texts))


# --- the real embedded encoder ---
def _sample_dialogues():
    return read_dialogues(sample_data_path()).dialogues  # shipped with the package: missing is a failure


@pytest.mark.slow
def test_training_on_sample_data_beats_the_untrained_encoder(tmp_path):
    dialogues = _sample_dialogues()
    order = list(range(len(dialogues)))
    random.Random(0).shuffle(order)
    n_eval = len(dialogues) // 4
    held_out = [dialogues[i] for i in order[:n_eval]]
    train = [dialogues[i] for i in order[n_eval:]]
    negatives = min(9, 2 * n_eval - 2)
    train_rows = build_receiver_examples(train, num_negatives=1).to_list()
    eval_rows = build_receiver_examples(held_out, num_negatives=negatives, seed=1).to_list()

    untrained = evaluate_ranking(receiver_score_fn(Receiver.from_pretrained("embedded")), eval_rows)
    receiver = Receiver.from_pretrained("embedded", temperature=0.1, max_length=48)
    cfg = ReceiverTrainingConfig(output_dir=str(tmp_path / "run"), max_steps=25, per_device_train_batch_size=16,
                                 learning_rate=5e-5, save_steps=0, logging_steps=5, use_cpu=True)
    trained = ReceiverTrainer(receiver, cfg, train_rows, eval_rows).train()["final_eval"]
    assert trained["hits@1"] > untrained["hits@1"], (trained, untrained)
