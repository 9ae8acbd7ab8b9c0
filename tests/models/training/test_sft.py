import math

import pytest
import torch
from transformers import TrainingArguments

from data_prep import PersonaDialogue, build_transmitter_examples, read_dialogues, sample_data_path
from models.networks.transmitter import Transmitter
from models.prompting.prompt import PromptFormatter
from models.training.sft import (
    IGNORE_INDEX,
    SFTCollator,
    TransmitterSFTConfig,
    TransmitterSFTDataset,
    TransmitterSFTTrainer,
    lm_loss,
    nup_loss,
)
from tests.models.transmitter_fixtures import save_tiny_lm, smollm2_tokenizer, tiny_transmitter

DIALOGUES = [
    PersonaDialogue(["i have a dog.", "i like jazz."], ["i am a nurse.", "i love tea."],
                    ["hi there!", "hello, how are you?", "good, walking my dog.", "nice, i just made tea."], dialogue_id="a"),
    PersonaDialogue(["i live in oslo."], ["i play chess."],
                    ["hey", "hey, any hobbies?", "i ski a lot.", "i prefer chess."], dialogue_id="b"),
    PersonaDialogue(["i am a chef."], ["i run marathons."],
                    ["what do you do?", "i run. you?", "i cook for a living.", "cool!"], dialogue_id="c"),
]


def _dataset(num_distractors=1, max_history_tokens=48):
    fmt = PromptFormatter(smollm2_tokenizer(), max_history_tokens=max_history_tokens)
    return TransmitterSFTDataset(build_transmitter_examples(DIALOGUES, num_distractors=num_distractors), fmt, 16)


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, learning_rate=3e-3, max_steps=6,
                logging_steps=2, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, seed=0,
                remove_unused_columns=False, label_names=["labels"], lr_scheduler_type="constant")
    base.update(kw)
    return TrainingArguments(**base)


def test_lm_and_nup_losses_hand_computed():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))  # (1, 2, 3)
    labels = torch.tensor([[0, IGNORE_INDEX]])
    assert lm_loss(logits, labels).item() == pytest.approx(-math.log(0.5), abs=1e-6)
    loss, acc = nup_loss(torch.tensor([2.0, 0.0]), torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
    expected = (-(2 - math.log(math.e**2 + 2)) - (0 - math.log(1 + math.e + math.e**-1))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6) and acc.item() == 0.5


def test_collator_masks_everything_but_the_response():
    ds = _dataset(num_distractors=2)
    feats = [ds[0], ds[5]]
    b = SFTCollator(pad_token_id=smollm2_tokenizer().pad_token_id)(feats)
    assert b["cand_input_ids"].shape[0] == 4 and b["input_ids"].shape == b["labels"].shape
    for i, f in enumerate(feats):
        lab = b["labels"][i]
        assert lab[lab != IGNORE_INDEX].tolist() == f["response"]
        assert b["input_ids"][i, -len(f["response"]):].tolist() == f["response"]  # left padded: response at the end
        assert b["attention_mask"][i].sum() == len(f["context"]) + len(f["response"])
    assert b["cand_input_ids"][1, -len(feats[0]["distractors"][1]):].tolist() == feats[0]["distractors"][1]


def test_config_validation():
    with pytest.raises(ValueError, match="alpha"):
        TransmitterSFTConfig(alpha=1.5)
    with pytest.raises(ValueError, match="num_distractors"):
        TransmitterSFTConfig(num_distractors=0)
    assert TransmitterSFTConfig(alpha=1.0, num_distractors=0).alpha == 1.0
    with pytest.raises(ValueError, match="lora"):
        TransmitterSFTConfig(use_peft=True, lora_target_modules=[])
    assert TransmitterSFTConfig(use_peft=True).lora_config().r == 16


def _batch_loss(model, trainer, ds):
    model.eval()
    batch = SFTCollator(model.tokenizer.pad_token_id)([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        return float(trainer.compute_loss(model, batch))


def test_trainer_lowers_loss_and_logs_both_losses(tmp_path):
    model, ds = tiny_transmitter(), _dataset()
    trainer = TransmitterSFTTrainer(model=model, args=_args(tmp_path), train_dataset=ds,
                                    data_collator=SFTCollator(model.tokenizer.pad_token_id), alpha=0.6)
    before = _batch_loss(model, trainer, ds)
    trainer.train()
    after = _batch_loss(model, trainer, ds)
    assert after < before
    logged = [h for h in trainer.state.log_history if "loss/lm" in h]
    assert logged and all("loss/nup" in h and "nup/accuracy" in h for h in logged)
    trainer.save_model(str(tmp_path / "saved"))
    reloaded = Transmitter.from_pretrained(str(tmp_path / "saved"))
    assert torch.equal(reloaded.nup_head.weight, model.nup_head.weight)


def test_lora_sft_changes_only_adapters_and_heads(tmp_path):
    save_tiny_lm(tmp_path / "base")
    cfg = TransmitterSFTConfig(use_peft=True, lora_r=4, lora_target_modules=["q_proj", "v_proj"], with_value_head=True)
    model = Transmitter.from_pretrained(str(tmp_path / "base"), lora=cfg.lora_config(), with_value_head=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = TransmitterSFTTrainer(model=model, args=_args(tmp_path, max_steps=3, activation_checkpointing=True),
                                    train_dataset=_dataset(), data_collator=SFTCollator(model.tokenizer.pad_token_id))
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any("lora_B" in n for n in changed) and "nup_head.weight" in changed
    assert all("lora_" in n or n.startswith("nup_head") for n in changed)  # value head gets no loss in SFT


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    ds = _dataset()
    runs = {}
    for name, kw in (("full", {}), ("cut", dict(max_steps=2))):
        model = tiny_transmitter()
        args = _args(tmp_path / name, max_steps=kw.get("max_steps", 4), save_strategy="steps", save_steps=2)
        TransmitterSFTTrainer(model=model, args=args, train_dataset=ds,
                              data_collator=SFTCollator(model.tokenizer.pad_token_id)).train()
        runs[name] = model
    resumed = tiny_transmitter(seed=1)  # different init: everything must come from the checkpoint
    trainer = TransmitterSFTTrainer(model=resumed, args=_args(tmp_path / "cut", max_steps=4, save_strategy="steps",
                                                              save_steps=2),
                                    train_dataset=ds, data_collator=SFTCollator(resumed.tokenizer.pad_token_id))
    trainer.train(resume_from_checkpoint=str(tmp_path / "cut" / "out" / "checkpoint-2"))
    for (n, p), (_, q) in zip(runs["full"].named_parameters(), resumed.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


@pytest.mark.slow
def test_sft_lowers_loss_of_the_real_embedded_policy(tmp_path):
    dialogues = read_dialogues(sample_data_path()).dialogues[:4]
    model = Transmitter.from_pretrained("embedded")
    fmt = PromptFormatter(model.tokenizer, max_history_tokens=16)
    examples = build_transmitter_examples(dialogues, num_distractors=1).select(range(4))
    ds = TransmitterSFTDataset(examples, fmt, max_response_tokens=16)
    trainer = TransmitterSFTTrainer(model=model, args=_args(tmp_path, learning_rate=1e-4, max_steps=3,
                                                            per_device_train_batch_size=4, logging_steps=1),
                                    train_dataset=ds, data_collator=SFTCollator(model.tokenizer.pad_token_id))
    before = _batch_loss(model, trainer, ds)
    trainer.train()
    assert _batch_loss(model, trainer, ds) < before


def test_heads_get_their_own_learning_rate(tmp_path):
    model = tiny_transmitter(with_value_head=True)
    trainer = TransmitterSFTTrainer(model=model, args=_args(tmp_path, learning_rate=1e-5), train_dataset=_dataset(),
                                    data_collator=SFTCollator(model.tokenizer.pad_token_id), heads_learning_rate=1e-2)
    opt = trainer.create_optimizer()
    heads = {id(p) for p in (*model.nup_head.parameters(), *model.value_head.parameters())}
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_lr[1e-2] == heads and all(not (ids & heads) for lr, ids in by_lr.items() if lr != 1e-2)
    assert sum(len(g["params"]) for g in opt.param_groups) == len([p for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize("config", ["sft", "rl", "rl-trl"])
def test_every_trainer_refuses_lora_that_trains_nothing(config):
    from launch.commands.rl_trl import SelfPlayTRLConfig
    from rl.config import PPOConfig

    make = {"sft": TransmitterSFTConfig, "rl": PPOConfig, "rl-trl": SelfPlayTRLConfig}[config]
    with pytest.raises(ValueError, match="use_peft needs lora_r >= 1"):
        make(use_peft=True, lora_r=0)
    with pytest.raises(ValueError, match="lora_target_modules"):
        make(use_peft=True, lora_target_modules=[])
    assert make(use_peft=True, lora_r=4).lora_r == 4
