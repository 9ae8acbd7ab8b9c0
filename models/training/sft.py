"""Multi-task SFT of the Transmitter: LM loss on response tokens plus next-utterance prediction (NUP).

``loss = α · LM + (1 − α) · NUP`` where LM is the token cross-entropy of the gold response given its context
and NUP the cross-entropy of picking the gold response among ``[gold, distractor_1..K]`` by the NUP head
(P² Bot, Liu et al. 2020, §3.1; seed α = 0.6). Built on HF ``Trainer``: accelerate/DeepSpeed, gradient
accumulation, checkpointing and ``resume_from_checkpoint`` come from it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import Trainer

from models.networks.transmitter import Transmitter, pad_batch
from models.prompting.prompt import PromptFormatter
from models.training.lora import check_lora, lora_config

IGNORE_INDEX = -100


@dataclass
class TransmitterSFTConfig:
    """p2bot-specific SFT options (optimiser, batch size, steps, saving... are HF ``TrainingArguments``)."""

    model: str = field(default="embedded", metadata={"help": "policy: 'embedded', a hub id or a local path"})
    data: str = field(default="", metadata={"help": "training dialogues (ParlAI txt, SPC CSV, JSONL); '' = sample"})
    data_format: str | None = field(default=None, metadata={"help": "force a reader format (default: inferred)"})
    eval_data: str | None = field(default=None, metadata={"help": "optional held-out dialogues for eval loss"})
    max_dialogues: int = field(default=0, metadata={"help": "use only the first N dialogues (0 = all)"})
    skip_dialogues: int = field(default=0, metadata={"help": "skip the first N dialogues (e.g. held out for eval)"})
    alpha: float = field(default=0.6, metadata={"help": "weight of the LM loss; NUP gets 1 - alpha"})
    num_distractors: int = field(default=1, metadata={"help": "distractor responses per example for the NUP loss"})
    max_history_tokens: int = field(default=256, metadata={"help": "history token budget (left-truncated)"})
    max_response_tokens: int = field(default=64, metadata={"help": "responses/distractors longer are cut (end kept)"})
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing of the LM loss"})
    heads_learning_rate: float = field(
        default=1e-3, metadata={"help": "learning rate of the NUP/value heads, which start from scratch (0 = same "
                                        "as learning_rate)"})
    use_peft: bool = field(default=False, metadata={"help": "train LoRA adapters instead of all LM weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "module names that get LoRA adapters"})
    with_value_head: bool = field(default=False, metadata={"help": "add (and save) a PPO value head"})
    distractor_seed: int = field(default=0, metadata={"help": "seed of distractor sampling"})

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.alpha < 1.0 and self.num_distractors < 1:
            raise ValueError(f"alpha={self.alpha} < 1 trains the NUP head: num_distractors must be >= 1")
        if self.heads_learning_rate < 0:
            raise ValueError(f"heads_learning_rate must be >= 0, got {self.heads_learning_rate}")
        if self.max_response_tokens < 2:
            raise ValueError(f"max_response_tokens must be >= 2, got {self.max_response_tokens}")
        check_lora(self)

    def lora_config(self):
        """The PEFT ``LoraConfig`` (or None without ``use_peft``)."""
        return lora_config(self)


def _cut_response(ids: list[int], limit: int) -> list[int]:
    return ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:]


class TransmitterSFTDataset(Dataset):
    """Tokenised SFT examples: ``{"context", "response", "distractors"}`` id lists.

    Args:
        examples: rows of ``data_prep.build_transmitter_examples`` (persona, history, response, distractors).
        formatter: the shared ``PromptFormatter``.
        max_response_tokens: cut longer responses (their end marker is kept).
    """

    def __init__(self, examples, formatter: PromptFormatter, max_response_tokens: int = 64):
        self.rows = []
        for ex in examples:
            self.rows.append(dict(
                context=formatter.encode_context(ex["persona"], ex["history"]),
                response=_cut_response(formatter.encode_response(ex["response"]), max_response_tokens),
                distractors=[_cut_response(formatter.encode_response(d), max_response_tokens)
                             for d in ex["distractors"]],
            ))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


@dataclass
class SFTCollator:
    """Left-pads (context + gold) and (context + distractor) sequences; the NUP token is the last one."""

    pad_token_id: int

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        gold = [f["context"] + f["response"] for f in features]
        ids, mask = pad_batch(gold, self.pad_token_id, side="left")
        labels = torch.full_like(ids, IGNORE_INDEX)
        for i, f in enumerate(features):
            n = len(f["response"])
            labels[i, ids.size(1) - n:] = torch.as_tensor(f["response"])
        k = {len(f["distractors"]) for f in features}
        if len(k) != 1:
            raise ValueError(f"all examples of a batch need the same number of distractors, got {sorted(k)}")
        batch = dict(input_ids=ids, attention_mask=mask, labels=labels,
                     response_len=torch.tensor([len(f["response"]) for f in features]))
        if k.pop():
            cands = [f["context"] + d for f in features for d in f["distractors"]]
            batch["cand_input_ids"], batch["cand_attention_mask"] = pad_batch(cands, self.pad_token_id, side="left")
        return batch


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean token cross-entropy; ``logits`` (B, K, V) are the last K positions, ``labels`` (B, K-1) the tokens
    they predict (position j predicts label j), ``IGNORE_INDEX`` where no loss."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                           label_smoothing=label_smoothing)


def nup_loss(gold_logits: torch.Tensor, distractor_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the gold (index 0) among ``[gold, d_1..d_K]``; ``gold_logits`` (B,), ``distractor_logits``
    (B, K). Returns ``(loss, accuracy)`` (accuracy: the gold beats every distractor)."""
    scores = torch.cat([gold_logits[:, None], distractor_logits], 1).float()  # (B, 1+K)
    target = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
    acc = (scores[:, 0] > scores[:, 1:].max(1).values).float().mean()
    return F.cross_entropy(scores, target), acc


class TransmitterSFTTrainer(Trainer):
    """HF ``Trainer`` with the multi-task loss; logs ``loss/lm``, ``loss/nup`` and ``nup/accuracy``.

    Args:
        alpha: LM weight (NUP gets ``1 - alpha``).
        label_smoothing: label smoothing of the LM loss.
        heads_learning_rate: own learning rate for the (freshly initialised) heads; 0 = the LM's.
        Everything else as ``transformers.Trainer`` (``model`` is a ``Transmitter``).
    """

    def __init__(self, *args, alpha: float = 0.6, label_smoothing: float = 0.0, heads_learning_rate: float = 0.0,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.model, Transmitter):
            raise ValueError("TransmitterSFTTrainer trains a models.networks.transmitter.Transmitter")
        self.alpha, self.label_smoothing, self.heads_learning_rate = alpha, label_smoothing, heads_learning_rate
        self._sums: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    def create_optimizer(self, model=None):
        """Trainer's optimizer, with the heads moved to their own parameter group when ``heads_learning_rate``."""
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh and self.heads_learning_rate > 0:
            heads = [p for n, p in self.model.named_parameters()
                     if n.startswith(("nup_head.", "value_head.")) and p.requires_grad]
            ids = {id(p) for p in heads}
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in ids]
            optimizer.add_param_group({"params": heads, "lr": self.heads_learning_rate, "weight_decay": 0.0})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
        keep = int(inputs["response_len"].max()) + 1  # logits of the last K positions cover every response token
        last = torch.full((ids.size(0),), ids.size(1) - 1, device=ids.device)
        gold = model(ids, mask, nup_index=last if "cand_input_ids" in inputs else None, logits_to_keep=keep)
        loss_lm = lm_loss(gold.logits[:, :-1], labels[:, ids.size(1) - keep + 1:], self.label_smoothing)
        stats = {"loss/lm": loss_lm.detach()}
        loss = self.alpha * loss_lm
        if "cand_input_ids" in inputs:
            c_ids, c_mask = inputs["cand_input_ids"], inputs["cand_attention_mask"]
            c_last = torch.full((c_ids.size(0),), c_ids.size(1) - 1, device=c_ids.device)
            cand = model(c_ids, c_mask, nup_index=c_last, return_logits=False)
            loss_nup, acc = nup_loss(gold.nup_logits, cand.nup_logits.view(ids.size(0), -1))
            loss = loss + (1.0 - self.alpha) * loss_nup
            stats.update({"loss/nup": loss_nup.detach(), "nup/accuracy": acc.detach()})
        split = "train" if model.training else "eval"
        for k, v in stats.items():
            self._sums[split][k].append(float(v))
        return (loss, {"loss": loss}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        split = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if split == "eval" else ""
        for k, values in self._sums[split].items():
            if values:
                logs[prefix + k] = round(sum(values) / len(values), 4)
        self._sums[split] = defaultdict(list)
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        self.model.save_pretrained(output_dir or self.args.output_dir, atomic=False)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        (model or self.model).load_weights(resume_from_checkpoint)
