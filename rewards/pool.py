"""``ScorerPool``: one shared copy of each frozen model the built-in rewards need.

Fluency and coherence both score with the reference transmitter (``lm_scorer()``, ``nup_scorer()``); persona and
repetition share one Receiver (``receiver()``). Models load lazily on first use, so building rewards costs
nothing until they are called. A trainer that already holds the models hands them in instead
(``ScorerPool(transmitter=ref_model)``, or the LoRA policy itself, scored with its adapter disabled).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any


class ScorerPool:
    """Lazily loaded, frozen scorers shared by several rewards.

    Args:
        policy: the frozen transmitter to load when none is given: ``"embedded"``, a hub id or a local path.
        receiver: the Receiver to load when none is given (same forms).
        transmitter: an already loaded Transmitter to score with (e.g. the trainer's reference model).
        receiver_model: an already loaded Receiver.
        formatter: the ``PromptFormatter`` matching the transmitter (default: built from its tokenizer).
        disable_adapter: score a PEFT transmitter with its adapter disabled (its frozen base).
        max_history_tokens: history budget of the default formatter.
        device, torch_dtype: where and how models loaded by the pool live.
        load_context: a callable returning the context manager models are loaded in (``p2bot rl`` loads frozen
            scorers outside ZeRO-3 partitioning this way).
        lm_memo: a ``models.scoring.scorers.LogprobMemo`` the LM scorer records its log-probs in (``p2bot rl``
            reads the reference log-probs from it when the reference is the pool's transmitter).
        bf16: the LM scorer runs under bfloat16 autocast (``p2bot rl --bf16``).
    """

    def __init__(
        self,
        policy: str | os.PathLike = "embedded",
        receiver: str | os.PathLike = "embedded",
        *,
        transmitter: Any = None,
        receiver_model: Any = None,
        formatter: Any = None,
        disable_adapter: bool = True,
        max_history_tokens: int = 256,
        device: Any = None,
        torch_dtype: Any = None,
        load_context: Any = None,
        lm_memo: Any = None,
        bf16: bool = False,
    ):
        self.policy_path, self.receiver_path = policy, receiver
        self._transmitter, self._receiver, self._formatter = transmitter, receiver_model, formatter
        self.disable_adapter, self.max_history_tokens = disable_adapter, max_history_tokens
        self.device, self.torch_dtype = device, torch_dtype
        self.load_context, self.lm_memo, self.bf16 = load_context or contextlib.nullcontext, lm_memo, bf16
        self._lm_scorer = self._nup_scorer = None
        self._owned: list = []  # models this pool loaded (setup moves only these)
        self._used: set[str] = set()  # the roles rewards have scored with (``reward_models``)

    @staticmethod
    def _freeze(model) -> None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)

    def transmitter(self):
        if self._transmitter is None:
            from models.networks.transmitter import Transmitter

            with self.load_context():
                self._transmitter = Transmitter.from_pretrained(
                    str(self.policy_path), torch_dtype=self.torch_dtype, device=self.device
                )
            self._transmitter.merge_lora()  # a LoRA-SFT checkpoint scores as the SFT model it is
            self._freeze(self._transmitter)
            self._owned.append(self._transmitter)
        return self._transmitter

    def formatter(self):
        if self._formatter is None:
            from models.prompting.prompt import PromptFormatter

            self._formatter = PromptFormatter(self.transmitter().tokenizer, max_history_tokens=self.max_history_tokens)
        return self._formatter

    def receiver(self):
        self._used.add("receiver")
        if self._receiver is None:
            from models.networks.receiver import Receiver

            with self.load_context():
                self._receiver = Receiver.from_pretrained(str(self.receiver_path), device=self.device)
            self._freeze(self._receiver)
            self._owned.append(self._receiver)
        return self._receiver

    def lm_scorer(self):
        self._used.add("lm")
        if self._lm_scorer is None:
            from models.scoring.scorers import LMScorer

            t = self.transmitter()
            self._lm_scorer = LMScorer(t, t.tokenizer, disable_adapter=self.disable_adapter, memo=self.lm_memo,
                                       bf16=self.bf16)
        return self._lm_scorer

    def nup_scorer(self):
        self._used.add("lm")
        if self._nup_scorer is None:
            from models.scoring.scorers import NUPScorer

            self._nup_scorer = NUPScorer(self.transmitter(), disable_adapter=self.disable_adapter)
        return self._nup_scorer

    def reward_models(self) -> dict[str, dict[str, str]]:
        """The models rewards have scored with so far, by role: ``receiver`` (persona, repetition) and ``lm`` (the
        frozen transmitter: fluency, coherence), each as ``models.loading.pretrained.model_identity``."""
        from models.loading.pretrained import model_identity

        sources = {"receiver": (self.receiver_path, "receiver"), "lm": (self.policy_path, "policy")}
        return {role: model_identity(*sources[role]) for role in sorted(self._used)}

    def setup(self, accelerator) -> None:
        """Put the models this pool loaded itself on ``accelerator.device`` (handed-in ones are left alone)."""
        self.device = accelerator.device
        for model in self._owned:
            model.to(accelerator.device)
