"""The Receiver: a bi-encoder that tells how strongly an utterance reveals a persona.

Utterance u and persona sentences p_j are embedded by one ``AutoModel`` encoder with mean pooling over the
attention mask and L2-normalised; s_j = u·p_j / τ and the persona score is the soft maximum
Σ_j softmax_j(s)·s_j. Training (``models.training.receiver_training``) and scoring share ``Receiver.forward``, so
the pooling can never differ between the two (the seed trained with [CLS] and scored with mean pooling).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from data_prep.files.atomic import replace_dir, temp_dir_for
from models.infra.hub import PushToHubMixin, local_snapshot
from models.infra.model_card import CardInfo, write_card
from models.loading.pretrained import resolve_model_path

RECEIVER_CONFIG_NAME = "p2bot_receiver.json"
DEFAULT_TEMPERATURE = 0.1


def resolve_receiver_path(name_or_path: str | os.PathLike) -> str:
    """``"embedded"`` → the packaged all-MiniLM-L6-v2 directory; anything else (hub id, local path) as is."""
    return str(resolve_model_path(name_or_path, kind="receiver"))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where ``attention_mask`` is 1: (B, T, D), (B, T) → (B, D)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def soft_persona_scores(
    utt_emb: torch.Tensor, persona_emb: torch.Tensor, persona_mask: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft-max persona score of each utterance against its own (padded) persona.

    Args:
        utt_emb: (B, D) normalised utterance embeddings.
        persona_emb: (B, M, D) normalised persona sentence embeddings, padded to M sentences.
        persona_mask: (B, M) bool, True for real sentences (each row needs at least one).
        temperature: τ in s_j = u·p_j / τ.

    Returns:
        scores (B,) = Σ_j softmax_j(s)·s_j, sims s (B, M) (padding = 0), weights softmax_j(s) (B, M).
    """
    sims = torch.einsum("bd,bmd->bm", utt_emb, persona_emb) / temperature  # (B, M)
    sims = sims.masked_fill(~persona_mask, 0.0)
    weights = torch.softmax(sims.masked_fill(~persona_mask, float("-inf")), dim=-1)  # (B, M)
    scores = (weights * sims).sum(dim=-1)  # (B,)
    return scores, sims, weights


@dataclass
class ReceiverScores:
    """``scores`` (N,); ``similarities[i]`` (len(persona_i),) = s_j; ``weights[i]`` = softmax_j(s)."""

    scores: torch.Tensor
    similarities: list[torch.Tensor]
    weights: list[torch.Tensor]


def pad_personas(
    personas: Sequence[Sequence[str]], index: dict[str, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index matrix (N, M) into the rows of a sentence table, and the (N, M) mask of real sentences."""
    if any(len(p) == 0 for p in personas):
        raise ValueError("every persona needs at least one sentence")
    width = max(len(p) for p in personas)
    idx = torch.zeros(len(personas), width, dtype=torch.long)
    mask = torch.zeros(len(personas), width, dtype=torch.bool)
    for i, persona in enumerate(personas):
        idx[i, : len(persona)] = torch.tensor([index[s] for s in persona])
        mask[i, : len(persona)] = True
    return idx, mask


class Receiver(PushToHubMixin, nn.Module):
    """Bi-encoder persona scorer over any ``AutoModel`` encoder.

    Args:
        encoder: an HF encoder returning ``last_hidden_state``.
        tokenizer: its tokenizer.
        temperature: τ of the similarity softmax.
        max_length: tokens kept per sentence.
        cache_size: persona-sentence embeddings kept (least recently used evicted). The cache is cleared
            whenever ``train()``/``eval()`` is called or ``clear_cache()`` is, so it never outlives weights.

    ``card`` (a ``models.infra.model_card.CardInfo``) is what the next ``save_pretrained`` writes into the model card.
    """

    def __init__(
        self,
        encoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        temperature: float = DEFAULT_TEMPERATURE,
        max_length: int = 128,
        cache_size: int = 100_000,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.encoder, self.tokenizer = encoder, tokenizer
        if getattr(encoder, "pooler", None) is not None:  # mean pooling never reads BERT's pooler: freeze it, or
            encoder.pooler.requires_grad_(False)          # DDP stops on parameters that get no gradient
        self.temperature, self.max_length, self.cache_size = float(temperature), max_length, cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.card = CardInfo()

    # --- loading / saving ---
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = "embedded",
        temperature: float | None = None,
        *,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
    ) -> Receiver:
        """Load an encoder (a local directory or hub id, optionally at ``revision``); a model written by
        ``save_pretrained`` (or pushed with ``push_to_hub``) also restores τ and max_length."""
        path = local_snapshot(resolve_receiver_path(name_or_path), RECEIVER_CONFIG_NAME, revision)
        saved = {}
        cfg_file = Path(path) / RECEIVER_CONFIG_NAME
        if cfg_file.is_file():
            saved = json.loads(cfg_file.read_text())
            if saved.get("pooling", "mean") != "mean":
                raise ValueError(f"{cfg_file}: unsupported pooling {saved['pooling']!r}")
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        encoder = AutoModel.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        receiver = cls(
            encoder, tokenizer,
            temperature=temperature if temperature is not None else saved.get("temperature", DEFAULT_TEMPERATURE),
            max_length=max_length or saved.get("max_length", 128),
        )
        receiver.card.base_model = saved.get("base_model") or str(name_or_path)
        return receiver.to(device) if device is not None else receiver

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Encoder (safetensors), tokenizer, ``p2bot_receiver.json`` and a model card, written to a temp directory,
        fsynced and swapped into place (the old copy stays until the new one is complete)."""
        out = Path(save_directory)
        tmp = temp_dir_for(out)
        try:
            self.encoder.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            meta = {"temperature": self.temperature, "pooling": "mean", "normalize": True,
                    "max_length": self.max_length, "base_model": self.card.base_model}
            (tmp / RECEIVER_CONFIG_NAME).write_text(json.dumps(meta, indent=2))
            write_card(tmp, self.card, kind="receiver",
                       summary=f"A persona Receiver trained with p2bot: a bi-encoder that scores how strongly an "
                               f"utterance reveals a persona (mean pooling, cosine similarity / τ = {self.temperature:g},"
                               " soft maximum over the persona's sentences).")
            replace_dir(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    # --- the differentiable path (training) ---
    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def tokenize_by_length(self, texts: Sequence[str], batch_size: int) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """``texts`` tokenized in chunks of ``batch_size``, shortest first, so each chunk pads only to its own longest.

        Returns the chunks and ``restore`` (N,): ``forward(chunks=chunks)[restore]`` is in the order of ``texts``.
        """
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = [self.tokenize([texts[i] for i in order[s : s + batch_size]]) for s in range(0, len(order), batch_size)]
        restore = torch.empty(len(order), dtype=torch.long)
        restore[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        return chunks, restore.to(self.device)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids=None, *, chunks: Sequence[dict[str, torch.Tensor]] | None = None) -> torch.Tensor:
        """Mean-pooled, L2-normalised sentence embeddings (B, D); the one pooling used everywhere.

        ``chunks`` (from ``tokenize_by_length``) encodes several padded batches in one call (one call, so a DDP
        or DeepSpeed wrapper sees one forward per backward) and concatenates their rows.
        """
        if chunks is not None:
            return torch.cat([self._encode(**c) for c in chunks])
        return self._encode(input_ids, attention_mask, token_type_ids)

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return F.normalize(mean_pool(hidden, attention_mask), dim=-1)

    def train(self, mode: bool = True) -> Receiver:
        self.clear_cache()
        return super().train(mode)

    def clear_cache(self) -> None:
        self._cache.clear()

    # --- inference ---
    @contextmanager
    def _inference(self):
        """no_grad and dropout off, without clearing the cache (``nn.Module.train`` directly)."""
        was_training = self.training
        super().train(False)
        try:
            with torch.no_grad():
                yield
        finally:
            super().train(was_training)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Embeddings (N, D) of ``texts``, in batches sorted by length (less padding), returned in input order."""
        if not texts:
            return torch.empty(0, self.encoder.config.hidden_size, device=self.device)
        chunks, restore = self.tokenize_by_length(texts, batch_size)
        with self._inference():
            return self(chunks=chunks)[restore]

    def embed_cached(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Like ``embed`` but remembers each distinct text (used for persona sentences)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for text, row in zip(missing, self.embed(missing, batch_size)):
                self._cache[text] = row
        rows = []
        for t in texts:
            self._cache.move_to_end(t)
            rows.append(self._cache[t])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(rows) if rows else self.embed([], batch_size)

    @torch.no_grad()
    def score(
        self, utterances: Sequence[str], personas: Sequence[Sequence[str]], batch_size: int = 64
    ) -> ReceiverScores:
        """Persona score of ``utterances[i]`` against ``personas[i]`` (a list of sentences).

        Returns ``ReceiverScores``: scores (N,) = Σ_j softmax_j(s)·s_j with s_j = u·p_j/τ, and per row the
        similarities s (len(persona_i),) and softmax weights.
        """
        if len(utterances) != len(personas):
            raise ValueError(f"{len(utterances)} utterances but {len(personas)} personas")
        if not utterances:
            return ReceiverScores(torch.empty(0), [], [])
        distinct = {t: i for i, t in enumerate(dict.fromkeys(utterances))}  # repeated utterances embedded once
        u = self.embed(list(distinct), batch_size)  # (U, D)
        u = u[torch.tensor([distinct[t] for t in utterances], device=u.device)]  # (N, D)
        sentences = list(dict.fromkeys(s for p in personas for s in p))
        table = self.embed_cached(sentences, batch_size)  # (S, D)
        idx, mask = pad_personas(personas, {s: i for i, s in enumerate(sentences)})
        idx, mask = idx.to(table.device), mask.to(table.device)
        scores, sims, weights = soft_persona_scores(u, table[idx], mask, self.temperature)
        n = [len(p) for p in personas]
        return ReceiverScores(
            scores=scores.cpu(),
            similarities=[sims[i, :k].cpu() for i, k in enumerate(n)],
            weights=[weights[i, :k].cpu() for i, k in enumerate(n)],
        )
