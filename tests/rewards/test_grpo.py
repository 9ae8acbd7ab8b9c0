"""The same reward callables drive ``trl.GRPOTrainer`` (TRL's reward-function protocol)."""

from __future__ import annotations

import trl  # a declared dependency: its absence must fail, not skip
from datasets import Dataset

from models.scoring.scorers import LMScorer
from rewards import Component, Composite, FluencyReward, PersonaReward


class _CountingReceiver:
    """Receiver stand-in (the real one is covered in test_persona): score = words shared with the persona."""

    def __init__(self):
        self.calls = 0

    def score(self, utterances, personas):
        import torch

        self.calls += 1
        overlap = [len(set(u.lower().split()) & set(" ".join(p).lower().split())) for u, p in zip(utterances, personas)]
        return type("S", (), {"scores": torch.tensor(overlap, dtype=torch.float)})()


def test_rewards_drive_grpo_trainer(tiny_model_dir, smollm2_tokenizer, make_tiny_llama, tmp_path):
    personas = [["i love dogs."], ["i play the guitar."]]
    ds = Dataset.from_dict({"prompt": ["Tell me about yourself.", "What do you do for fun?"] * 2,
                            "persona": personas * 2})
    receiver = _CountingReceiver()
    persona = PersonaReward(receiver)
    fluency = FluencyReward(LMScorer(make_tiny_llama(1), smollm2_tokenizer))
    composite = Composite([Component("persona", persona, 0.5), Component("fluency", fluency, 0.5)])
    args = trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, max_steps=2, per_device_train_batch_size=4,
                          num_generations=4, max_completion_length=8, logging_steps=1, report_to="none",
                          save_strategy="no", learning_rate=1e-4, beta=0.0, disable_tqdm=True, bf16=False)
    trainer = trl.GRPOTrainer(model=str(tiny_model_dir), reward_funcs=[composite, persona], args=args,
                              train_dataset=ds, processing_class=smollm2_tokenizer)
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert receiver.calls >= 4  # both callables scored each of the 2 generation batches
    assert {"rewards/composite/mean", "rewards/persona/mean"} <= logged
    assert {"reward/persona", "reward/fluency"} <= logged  # the composite's components, via TRL's log_metric
    assert set(composite.last_components) == {"persona", "fluency"}
    assert all(len(v) == 4 for v in composite.last_components.values())
