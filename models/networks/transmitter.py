"""The Transmitter: any causal LM plus a next-utterance-prediction (NUP) head and an optional value head.

Saved layout (``save_pretrained``): the LM as a normal HF checkpoint (``model.safetensors``) or, with LoRA,
as a PEFT adapter (``adapter_model.safetensors``); the tokenizer; ``p2bot_heads.safetensors`` (``nup_head.*``,
``value_head.*``); ``p2bot_transmitter.json`` (format version, base model, flags, ``reward_models``: the frozen models
the rewards of each RL run that trained it scored with); a model card (``README.md``).
``push_to_hub`` uploads that folder; ``from_pretrained("user/repo")`` fetches it whole, heads included.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from data_prep.files.atomic import replace_dir, temp_dir_for
from models.infra.hub import PushToHubMixin, local_snapshot
from models.infra.model_card import CardInfo, write_card
from models.loading.pretrained import resolve_model_path

HEADS_FILE = "p2bot_heads.safetensors"
META_FILE = "p2bot_transmitter.json"
FORMAT_VERSION = 1
HEAD_INIT_SEED = 0


@dataclass
class TransmitterOutput:
    logits: torch.Tensor | None  # (B, T, V), or (B, K, V) with logits_to_keep=K; None when not asked for
    values: torch.Tensor | None = None  # (B, T)
    nup_logits: torch.Tensor | None = None  # (B,)
    cache: object | None = None  # the LM's KV cache when use_cache=True


def _make_head(hidden: int, std: float) -> nn.Linear:
    """A (hidden → 1) linear head, initialised from a fixed seed so two fresh loads score alike."""
    head = nn.Linear(hidden, 1)
    gen = torch.Generator().manual_seed(HEAD_INIT_SEED)
    with torch.no_grad():
        head.weight.normal_(0.0, std, generator=gen)
        head.bias.zero_()
    return head


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: 0 at each row's first real token.  # (B, T)"""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists to one (B, T) tensor; returns ``(input_ids, attention_mask)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, sl] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def _saved_through_a_tie(model: nn.Module, missing: Sequence[str]) -> set[str]:
    """The ``missing`` parameters tied to (the same tensor as) a parameter that was loaded."""
    by_tensor: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(param), []).append(name)
    absent = set(missing)
    return {k for names in by_tensor.values() if any(n not in absent for n in names) for k in names if k in absent}


def _load_lm(path, **kw):
    """``AutoModelForCausalLM.from_pretrained`` that refuses a checkpoint lacking weights (untied ones included),
    which transformers would otherwise initialise afresh."""
    lm, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **kw)
    if info["missing_keys"]:
        raise RuntimeError(f"{path}: the checkpoint lacks {sorted(info['missing_keys'])} "
                           "(not tied to a saved weight, so they would start untrained)")
    return lm


def saved_reward_models(name_or_path: str | os.PathLike, revision: str | None = None) -> dict[str, list[dict[str, str]]]:
    """The ``reward_models`` a saved Transmitter records (empty for a plain checkpoint or one RL never trained)."""
    local = Path(local_snapshot(resolve_model_path(name_or_path, kind="policy"), META_FILE, revision))
    return json.loads((local / META_FILE).read_text()).get("reward_models", {}) if (local / META_FILE).is_file() else {}


class Transmitter(PushToHubMixin, nn.Module):
    """A causal LM (``.lm``, a ``PreTrainedModel`` or ``PeftModel``) with scalar heads on its last hidden state.

    Args:
        lm: the causal LM.
        tokenizer: its tokenizer (a pad token is set to EOS when missing).
        with_value_head: add a value head (PPO critic sharing the trunk).
        base_name: the model argument the LM came from (recorded when saving a LoRA adapter).

    ``card`` (a ``models.infra.model_card.CardInfo``) is what the next ``save_pretrained`` writes into the model card;
    training code fills in data, config and metrics.
    """

    def __init__(self, lm, tokenizer, *, with_value_head: bool = False, base_name: str = ""):
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        hidden = self.config.hidden_size
        self.nup_head = _make_head(hidden, std=0.02)
        self.value_head = _make_head(hidden, std=0.0) if with_value_head else None
        self.base_name = base_name
        self.card = CardInfo(base_model=base_name)
        # role ("receiver", "lm") → the models RL rewards scored with, as {"name", "path"} (loading.model_identity)
        self.reward_models: dict[str, list[dict[str, str]]] = {}

    # --- construction / persistence ---

    @property
    def config(self):
        return self.lm.config

    @property
    def is_peft(self) -> bool:
        return hasattr(self.lm, "peft_config")

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "embedded", *, with_value_head: bool = False,
                        lora=None, torch_dtype=None, device=None, trust_remote_code: bool = False,
                        revision: str | None = None) -> Transmitter:
        """Load a Transmitter from ``"embedded"``, a hub id, a plain HF checkpoint or a saved Transmitter.

        Args:
            name_or_path: model argument (see ``models.loading.pretrained.resolve_model_path``).
            with_value_head: make sure a value head exists (a fresh zero-initialised one if none was saved).
            lora: a ``peft.LoraConfig`` to wrap the LM in new adapters (not allowed on a saved LoRA Transmitter,
                whose adapters are loaded trainable instead).
            torch_dtype: dtype of the LM weights (heads stay float32).
            device: where to put the model.
            trust_remote_code: passed to transformers (off by default).
            revision: hub revision (branch, tag or commit) of a hub id.
        """
        path = local_snapshot(resolve_model_path(name_or_path, kind="policy"), META_FILE, revision)
        local = Path(path)
        meta = json.loads((local / META_FILE).read_text()) if (local / META_FILE).is_file() else {}
        kw = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code)
        if (local / "adapter_config.json").is_file():
            from peft import PeftModel

            if lora is not None:
                raise ValueError(f"{path} already holds LoRA adapters; pass lora=None to continue training them")
            base = meta.get("base") or json.loads((local / "adapter_config.json").read_text())["base_model_name_or_path"]
            base_dir = Path(resolve_model_path(base))
            if (base_dir / "adapter_config.json").is_file():  # adapters over a LoRA checkpoint: its adapters merged in
                inner = cls.from_pretrained(str(base_dir), torch_dtype=torch_dtype, trust_remote_code=trust_remote_code)
                inner.merge_lora()
                lm = inner.lm
            else:
                lm = _load_lm(str(base_dir), **kw)
            lm = PeftModel.from_pretrained(lm, path, is_trainable=True)
            base_name = base
        else:
            lm = _load_lm(path, revision=revision, **kw)
            base_name = meta.get("base") or str(name_or_path)
            if lora is not None:
                from peft import get_peft_model

                lm = get_peft_model(lm, lora)
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        model = cls(lm, tokenizer, with_value_head=with_value_head or bool(meta.get("with_value_head")),
                    base_name=base_name)
        model.card.base_model = meta.get("base_model") or base_name  # the model p2bot training first started from
        model.reward_models = meta.get("reward_models", {})
        if (local / HEADS_FILE).is_file():
            loaded = model.load_heads(local / HEADS_FILE)
            if meta.get("with_value_head") and "value_head" not in loaded:
                raise ValueError(f"{name_or_path}: {META_FILE} says it has a value head but {HEADS_FILE} holds no "
                                 f"value_head.* weights ({local / HEADS_FILE})")
        elif meta:  # a p2bot checkpoint whose heads did not come with it would otherwise load with fresh heads
            raise FileNotFoundError(f"{name_or_path}: a p2bot checkpoint ({META_FILE}) without its {HEADS_FILE} "
                                    f"(looked in {local})")
        if device is not None:
            model.to(device)
        return model

    def heads_state_dict(self) -> dict[str, torch.Tensor]:
        heads = {"nup_head": self.nup_head, "value_head": self.value_head}
        return {f"{n}.{k}": v.detach().cpu().contiguous() for n, h in heads.items() if h is not None
                for k, v in h.state_dict().items()}

    def load_heads(self, file: str | os.PathLike) -> set[str]:
        """Load the heads saved in ``file``; returns the names of those loaded (``nup_head``, ``value_head``)."""
        state = load_file(str(file))
        self.nup_head.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("nup_head.")})
        value = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("value_head.")}
        if value and self.value_head is not None:
            self.value_head.load_state_dict(value)
            return {"nup_head", "value_head"}
        return {"nup_head"}

    def save_pretrained(self, save_directory: str | os.PathLike, *, atomic: bool = True) -> Path:
        """Write LM (or LoRA adapter), tokenizer, heads, metadata and model card to ``save_directory``.

        Args:
            atomic: write a temp directory, fsync it and swap it with ``save_directory`` (the old copy stays until
                the new one is in place); ``False`` writes into the directory in place (Trainer and RL
                checkpoints, which are themselves written to a temp directory first).
        """
        target = Path(save_directory)
        if not atomic:
            target.mkdir(parents=True, exist_ok=True)
            self._write(target)
            return target
        tmp = temp_dir_for(target)
        try:
            self._write(tmp)
            replace_dir(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _write(self, directory: Path) -> None:
        self.lm.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        save_file(self.heads_state_dict(), str(directory / HEADS_FILE))
        meta = dict(format_version=FORMAT_VERSION, base=self.base_name if self.is_peft else "",
                    base_model=self.card.base_model, peft=self.is_peft, with_value_head=self.value_head is not None,
                    reward_models=self.reward_models)
        (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        heads = "a next-utterance-prediction head" + (" and a value head" if self.value_head is not None else "")
        lm = "LoRA adapters over the base model" if self.is_peft else "a causal LM"
        write_card(directory, self.card, kind="policy",
                   summary=f"A persona-grounded dialogue agent trained with p2bot: {lm} with "
                           f"{heads} (`{HEADS_FILE}`).")

    def load_weights(self, directory: str | os.PathLike) -> None:
        """Load LM (or adapter) and head weights saved by ``save_pretrained`` into this model, in place."""
        directory = Path(directory)
        if self.is_peft:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.lm, load_file(str(directory / "adapter_model.safetensors")))
        else:
            state = {}
            for f in sorted(directory.glob("model*.safetensors")):
                state.update(load_file(str(f)))
            missing, unexpected = self.lm.load_state_dict(state, strict=False)
            missing = [k for k in missing if k not in _saved_through_a_tie(self.lm, missing)]
            if unexpected or missing:
                raise RuntimeError(f"{directory}: weights do not fit the model (missing {missing}, unexpected {unexpected})")
        self.load_heads(directory / HEADS_FILE)

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, every_n_layers: int = 1,
                                        offload: bool = False) -> None:
        """Gradient (activation) checkpointing of the LM's layers; called by HF ``Trainer``."""
        base = self.lm.get_base_model() if self.is_peft else self.lm
        kwargs = {"use_reentrant": False, **(activation_checkpointing_kwargs or {})}
        base.activation_checkpointing_enable(kwargs, every_n_layers=every_n_layers, offload=offload)
        if self.is_peft and kwargs["use_reentrant"]:
            base.enable_input_require_grads()

    def merge_lora(self) -> None:
        """Fold LoRA adapters into the base weights (the LM becomes a plain ``PreTrainedModel``)."""
        if self.is_peft:
            self.lm = self.lm.merge_and_unload()

    # --- forward ---

    def _head(self, head: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
        return head(hidden.to(head.weight.dtype)).squeeze(-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, nup_index: torch.Tensor | None = None,
                with_values: bool = False, return_logits: bool = True, logits_to_keep: int = 0,
                position_ids: torch.Tensor | None = None, cache=None, use_cache: bool = False,
                ) -> TransmitterOutput:
        """Run the LM; optionally the value head (every position) and the NUP head (at ``nup_index``).

        Args:
            input_ids, attention_mask: (B, T); left or right padding both work (positions skip the padding).
            nup_index: (B,) position whose last hidden state feeds the NUP head.
            with_values: also return values (B, T).
            return_logits: False computes logits only for the last position and returns ``logits=None``.
            logits_to_keep: keep logits of the last K positions only (0: all).
        """
        need_hidden = nup_index is not None or with_values
        if position_ids is None and cache is None:
            position_ids = position_ids_from_mask(attention_mask)
        extra = {"cache": cache} if cache is not None else {}
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      output_hidden_states=need_hidden, logits_to_keep=logits_to_keep if return_logits else 1,
                      use_cache=use_cache, **extra)
        hidden = out.hidden_states[-1] if need_hidden else None  # (B, T, H)
        values = self._head(self.value_head, hidden) if with_values and self.value_head is not None else None
        nup_logits = None
        if nup_index is not None:
            rows = torch.arange(hidden.size(0), device=hidden.device)
            nup_logits = self._head(self.nup_head, hidden[rows, nup_index.to(hidden.device)])  # (B,)
        if with_values and self.value_head is None:
            raise ValueError("with_values=True but this Transmitter has no value head (with_value_head=True)")
        return TransmitterOutput(out.logits if return_logits else None, values, nup_logits,
                                 out.cache if use_cache else None)

    # --- scoring helpers (no grad) ---

    @torch.no_grad()
    def score_nup(self, contexts_ids: Sequence[Sequence[int]], responses_ids: Sequence[Sequence[int]],
                  batch_size: int = 16) -> torch.Tensor:
        """NUP logits that each response follows its context: (B,) float32 on CPU."""
        if len(contexts_ids) != len(responses_ids):
            raise ValueError(f"{len(contexts_ids)} contexts but {len(responses_ids)} responses")
        seqs = [list(c) + list(r) for c, r in zip(contexts_ids, responses_ids)]
        out = []
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start:start + batch_size]
            ids, mask = pad_batch(chunk, self.tokenizer.pad_token_id, side="right")
            index = mask.sum(-1) - 1
            res = self(ids.to(self.device), mask.to(self.device), nup_index=index, return_logits=False)
            out.append(res.nup_logits.float().cpu())
        return torch.cat(out) if out else torch.empty(0)

    @torch.no_grad()
    def score_candidates(self, context_ids: Sequence[int], candidates_ids: Sequence[Sequence[int]]
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Score N candidate responses for one context, running the context once (its KV cache is shared).

        Returns:
            ``(nup_logits (N,), token_logprobs)``: the NUP logit of each candidate and, per candidate, the
            log-probs of its tokens given the context (1-D tensors), all float32 on CPU.
        """
        dev = self.device
        ctx = torch.as_tensor([list(context_ids)], dtype=torch.long, device=dev)
        ctx_out = self.lm(input_ids=ctx, attention_mask=torch.ones_like(ctx), use_cache=True, logits_to_keep=1)
        first_logprobs = torch.log_softmax(ctx_out.logits[0, -1].float(), -1)  # (V,)
        n = len(candidates_ids)
        cache = ctx_out.cache
        cache.batch_repeat_interleave(n)
        ids, mask = pad_batch(candidates_ids, self.tokenizer.pad_token_id, side="right")
        ids, mask = ids.to(dev), mask.to(dev)
        full_mask = torch.cat([torch.ones((n, ctx.size(1)), dtype=mask.dtype, device=dev), mask], 1)
        positions = ctx.size(1) + torch.arange(ids.size(1), device=dev).expand(n, -1)
        out = self.lm(input_ids=ids, attention_mask=full_mask, position_ids=positions, cache=cache,
                      use_cache=True, output_hidden_states=True)
        hidden = out.hidden_states[-1]  # (N, L, H)
        lengths = mask.sum(-1)
        nup = self._head(self.nup_head, hidden[torch.arange(n, device=dev), lengths - 1]).float().cpu()
        logprobs = torch.log_softmax(out.logits.float(), -1)  # (N, L, V): position j predicts token j+1
        token_lp = []
        for i in range(n):
            length = int(lengths[i])
            cand = ids[i, :length]
            lp = [first_logprobs[cand[0]].reshape(1)]
            if length > 1:
                lp.append(logprobs[i, : length - 1].gather(-1, cand[1:, None]).squeeze(-1))
            token_lp.append(torch.cat(lp).cpu())
        return nup, token_lp
