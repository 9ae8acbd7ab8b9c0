"""A policy with a separate critic: ``PolicyWithCritic`` looks like a ``Transmitter`` to the trainer.

The critic is a Transmitter of its own (any causal LM sharing the policy's tokenizer, possibly smaller) whose value
head reads its own trunk. Wrapped together, policy and critic are one module for ``accelerator.prepare`` (one
optimizer, one DDP/DeepSpeed engine, one ``save_state``), so the critic is checkpointed and resumed with the policy.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from models.networks.transmitter import Transmitter, TransmitterOutput


def check_same_tokenizer(policy_tok, critic_tok, critic_name: str = "the value model") -> None:
    """The critic reads the policy's token ids: its tokenizer must map text to the same ids."""
    probe = "Hi! I'm a nurse, I love hiking with my 2 dogs. <|im_end|>"
    if len(policy_tok) != len(critic_tok) or policy_tok(probe)["input_ids"] != critic_tok(probe)["input_ids"]:
        raise ValueError(f"{critic_name}: its tokenizer differs from the policy's ({len(critic_tok)} vs {len(policy_tok)} "
                         "tokens, or different ids for the same text); a critic must share the policy's tokenizer")


class PolicyWithCritic(nn.Module):
    """``policy`` (a Transmitter) for logits, ``critic`` (a Transmitter with a value head) for values."""

    def __init__(self, policy: Transmitter, critic: Transmitter):
        super().__init__()
        if critic.value_head is None:
            raise ValueError("the critic needs a value head (Transmitter.from_pretrained(..., with_value_head=True))")
        check_same_tokenizer(policy.tokenizer, critic.tokenizer, getattr(critic.config, "name_or_path", "the value model"))
        self.policy, self.critic = policy, critic

    # the Transmitter surface the trainer, generation and scorers use
    @property
    def lm(self):
        return self.policy.lm

    @property
    def tokenizer(self):
        return self.policy.tokenizer

    @property
    def config(self):
        return self.policy.config

    @property
    def nup_head(self):
        return self.policy.nup_head

    @property
    def value_head(self):
        return self.critic.value_head

    @property
    def card(self):
        return self.policy.card

    @property
    def reward_models(self) -> dict:
        return self.policy.reward_models

    @reward_models.setter
    def reward_models(self, value: dict) -> None:
        self.policy.reward_models = value

    @property
    def is_peft(self) -> bool:
        return self.policy.is_peft

    def activation_checkpointing_enable(self, *args, **kwargs) -> None:
        self.policy.activation_checkpointing_enable(*args, **kwargs)
        self.critic.activation_checkpointing_enable(*args, **kwargs)

    def forward(self, input_ids, attention_mask, *, with_values: bool = False, logits_to_keep=0, **kwargs) -> TransmitterOutput:
        out = self.policy(input_ids, attention_mask, logits_to_keep=logits_to_keep, **kwargs)
        if with_values:  # the critic's LM head is not needed: one logit position only
            out.values = self.critic(input_ids, attention_mask, with_values=True, logits_to_keep=1).values
        return out

    def score_nup(self, *args, **kwargs):
        return self.policy.score_nup(*args, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> Path:
        """The policy (what generation and evaluation load); ``save_critic`` writes the critic."""
        return self.policy.save_pretrained(save_directory, **kwargs)

    def save_critic(self, save_directory: str | os.PathLike, **kwargs) -> Path:
        return self.critic.save_pretrained(save_directory, **kwargs)
