"""Frozen scorers: the small interfaces through which rewards and evaluation judges see models (token ids in, tensors out).

``LMScorer`` gives log-probs of target tokens after a prefix under a causal LM; ``NUPScorer`` the probability
from a Transmitter's next-utterance head. Both accept a PEFT-wrapped model and can score with its adapter
disabled (``with model.disable_adapter():``), which turns a LoRA policy into its own frozen reference, so one
model copy serves the policy, the KL reference, fluency and coherence.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence

import torch
from trl.trainer.utils import selective_log_softmax

from models.networks.transmitter import pad_batch, position_ids_from_mask


def adapter_disabled(model, disable: bool = True):
    """``model.disable_adapter()`` for a PEFT model when ``disable``; a no-op context otherwise."""
    if disable and hasattr(model, "disable_adapter") and hasattr(model, "peft_config"):
        return model.disable_adapter()
    return contextlib.nullcontext()


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _forward_parameters(model) -> set[str]:
    """The arguments the model's ``forward`` names (a PEFT model forwards its keywords to the base model's)."""
    base = model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


class LogprobMemo:
    """Token log-probs a frozen LM has computed, for a later pass of the same model over the same tokens to read.

    ``LMScorer(memo=...)`` adds every span it scores; ``lookup`` finds a span of a sequence inside any recorded
    sequence with the same tokens up to the span's end (the causal LM saw the same context). RL's reference forward
    reads the fluency reward's log-probs this way (``rl.forward.memo_or_forward``) when both score with one model.
    """

    def __init__(self):
        self.entries: list[tuple[list[int], int, torch.Tensor]] = []  # (ids up to the span's end, span start, log-probs)

    def add(self, sequence: Sequence[int], start: int, end: int, logprobs: torch.Tensor) -> None:
        if end > start:
            self.entries.append((list(sequence[:end]), start, logprobs))

    def lookup(self, sequence: Sequence[int], start: int, end: int) -> torch.Tensor | None:
        """log p(x_t | x_<t) for t in [start, end) of ``sequence``, or None when no recorded span covers it."""
        head = list(sequence[:end])
        for ids, first, logprobs in self.entries:
            if first <= start and len(ids) >= end and ids[:end] == head:
                return logprobs[start - first:end - first]
        return None

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)


class LMScorer:
    """Per-token log-probs of ``targets`` given ``prefixes`` under a frozen causal LM.

    Args:
        model: an HF causal LM, a PEFT model around one, or a Transmitter (its ``.lm`` is used).
        tokenizer: the model's tokenizer.
        disable_adapter: score a PEFT model with its adapter off (the reference model of a LoRA policy).
        batch_size: sequences per forward pass (sorted by length to save padding).
        memo: a ``LogprobMemo`` that records every scored span, for another pass of the same model to reuse.
        bf16: run the model under bfloat16 autocast (as the RL policy's passes with ``PPOConfig.bf16``).
    """

    def __init__(self, model, tokenizer, *, disable_adapter: bool = True, batch_size: int = 16,
                 memo: LogprobMemo | None = None, bf16: bool = False):
        self.model = getattr(model, "lm", model)
        self.tokenizer = tokenizer
        self.disable_adapter, self.batch_size, self.memo, self.bf16 = disable_adapter, batch_size, memo, bf16
        self._keeps_logits: bool | None = None

    @property
    def keeps_logits(self) -> bool:
        """Whether the model's forward takes ``logits_to_keep`` (read from its signature once, before the first call):
        then the LM head runs only where a scored token is predicted, else on every position."""
        if self._keeps_logits is None:
            params = _forward_parameters(self.model)
            if "position_ids" not in params:
                raise ValueError(f"{type(self.model).__name__}.forward takes no position_ids: LMScorer left-pads "
                                 "batches and needs them to score padded rows correctly")
            self._keeps_logits = "logits_to_keep" in params
        return self._keeps_logits

    @property
    def start_ids(self) -> list[int]:
        """The token an utterance scored on its own is conditioned on (BOS, else EOS)."""
        tok = self.tokenizer
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if start is None:
            raise ValueError("the tokenizer has neither a BOS nor an EOS token to start an utterance with")
        return [start]

    def token_logprobs(self, prefixes: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """log p(targets[i][k] | prefixes[i], targets[i][:k]) as a (len(targets[i]),) CPU tensor per sample.

        A sample whose prefix + target begins a longer sample (a speaker's earlier turn, when its later prompt kept
        the whole history) is scored inside that one: one pass per longest sequence."""
        if len(prefixes) != len(targets):
            raise ValueError(f"{len(prefixes)} prefixes but {len(targets)} targets")
        if any(len(p) == 0 for p in prefixes):
            raise ValueError("every prefix needs at least one token (use LMScorer.start_ids)")
        sequences = [list(p) + list(t) for p, t in zip(prefixes, targets)]
        hosts: list[int] = []  # the samples scored as sequences of their own, longest first
        host_of = {}
        for i in sorted(range(len(sequences)), key=lambda i: -len(sequences[i])):
            n = len(sequences[i])
            host_of[i] = next((h for h in hosts if sequences[h][:n] == sequences[i]), i)
            if host_of[i] == i:
                hosts.append(i)
        members = {h: [i for i in range(len(sequences)) if host_of[i] == h] for h in hosts}
        spans = [[(len(prefixes[i]), len(sequences[i])) for i in members[h]] for h in hosts]
        out: list[torch.Tensor] = [torch.empty(0)] * len(sequences)
        for h, row in zip(hosts, self.span_logprobs([sequences[h] for h in hosts], spans)):
            for i, lp in zip(members[h], row):
                out[i] = lp
        return out

    @torch.no_grad()
    def span_logprobs(self, sequences: Sequence[Sequence[int]], spans: Sequence[Sequence[tuple[int, int]]]
                      ) -> list[list[torch.Tensor]]:
        """log p(x_t | x_<t) for the tokens of each span [start, end) of each sequence, one forward per sequence.

        Scoring several targets that share their context this way (a speaker's turns in one transcript) costs one
        pass over the transcript instead of one per target. Every span needs ``start >= 1``.
        """
        if len(sequences) != len(spans):
            raise ValueError(f"{len(sequences)} sequences but {len(spans)} span lists")
        if any(a < 1 or b > len(seq) or a > b for seq, sp in zip(sequences, spans) for a, b in sp):
            raise ValueError("every span must lie inside its sequence and start after its first token")
        out: list[list[torch.Tensor]] = [[] for _ in sequences]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        device = _device(self.model)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        was_training = self.model.training
        self.model.eval()
        try:
            with adapter_disabled(self.model, self.disable_adapter), torch.autocast(device.type, torch.bfloat16,
                                                                                    enabled=self.bf16):
                for start in range(0, len(order), self.batch_size):
                    chunk = [i for i in order[start:start + self.batch_size] if any(b > a for a, b in spans[i])]
                    if chunk:
                        self._score_spans(chunk, sequences, spans, out, device, pad)
        finally:
            self.model.train(was_training)
        out = [row if row else [torch.empty(0) for _ in sp] for row, sp in zip(out, spans)]
        if self.memo is not None:
            for seq, sp, row in zip(sequences, spans, out):
                for (a, b), lp in zip(sp, row):
                    self.memo.add(seq, a, b, lp)
        return out

    def _score_spans(self, chunk, sequences, spans, out, device, pad) -> None:
        ids, mask = pad_batch([list(sequences[i]) for i in chunk], pad, side="left")  # (B, L)
        L = ids.shape[1]
        wanted = [[L - len(sequences[i]) + t for a, b in spans[i] for t in range(a, b)] for i in chunk]
        P = max(len(w) for w in wanted)
        targets = torch.tensor([w + [w[-1]] * (P - len(w)) for w in wanted])  # (B, P): positions of the scored tokens
        kw = dict(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids_from_mask(mask).to(device))
        if self.keeps_logits:
            logits = self.model(**kw, logits_to_keep=(targets - 1).to(device)).logits  # (B, P, V)
        else:
            full = self.model(**kw).logits  # (B, L, V)
            logits = full.gather(1, (targets - 1).to(device).unsqueeze(-1).expand(-1, -1, full.shape[-1]))
        logps = selective_log_softmax(logits.float(), ids.gather(1, targets).to(device))  # (B, P)
        for row, i in enumerate(chunk):
            k = 0
            for a, b in spans[i]:
                out[i].append(logps[row, k:k + b - a].cpu())
                k += b - a

    def mean_logprobs(self, prefixes: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[float | None]:
        """Mean log-prob per target token; None for an empty target."""
        return [float(lp.mean()) if lp.numel() else None for lp in self.token_logprobs(prefixes, targets)]

    def to(self, device) -> LMScorer:
        self.model.to(device)
        return self


class NUPScorer:
    """Probability that a response follows its context, from a Transmitter's NUP head.

    Args:
        transmitter: a ``models.networks.transmitter.Transmitter`` (anything with ``score_nup(contexts_ids,
            responses_ids) -> (B,) logits`` and an ``.lm``).
        disable_adapter: score with the LoRA adapter of ``transmitter.lm`` disabled.
        batch_size: pairs per call of ``score_nup``.
    """

    def __init__(self, transmitter, *, disable_adapter: bool = True, batch_size: int = 16):
        self.transmitter, self.disable_adapter, self.batch_size = transmitter, disable_adapter, batch_size

    @torch.no_grad()
    def probabilities(self, contexts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]) -> torch.Tensor:
        """σ(NUP logit) per (context, response) pair: (B,) CPU float tensor."""
        if len(contexts) != len(responses):
            raise ValueError(f"{len(contexts)} contexts but {len(responses)} responses")
        model = self.transmitter
        was_training = model.training
        model.eval()
        chunks = []
        try:
            with adapter_disabled(getattr(model, "lm", model), self.disable_adapter):
                for start in range(0, len(contexts), self.batch_size):
                    sl = slice(start, start + self.batch_size)
                    logits = model.score_nup([list(c) for c in contexts[sl]], [list(r) for r in responses[sl]])
                    chunks.append(torch.as_tensor(logits).detach().float().reshape(-1).cpu())
        finally:
            model.train(was_training)
        return torch.sigmoid(torch.cat(chunks)) if chunks else torch.empty(0)

    def to(self, device) -> NUPScorer:
        self.transmitter.to(device)
        return self
