"""Weak-supervision training and ranking evaluation of the Receiver.

Each example is (utterance u, own persona P⁺, negative personas P⁻_1..K from other dialogues). The loss is

    loss = mean_k max(0, margin − (S(u, P⁺) − S(u, P⁻_k)))  +  sparsity_coef · H(softmax_j(s⁺)) / log M⁺

with S the soft persona score of ``models.networks.receiver``; the negatives are the row's own (from the builder)
plus, with ``in_batch_negatives``, the personas of the other rows of the batch from other dialogues (those sharing a
sentence with P⁺ left out). The sparsity term is the entropy of the attention over
the own persona's sentences, normalised to [0, 1] by log M⁺: an utterance usually reveals one or two persona
facts, so the attention should be peaked. Evaluation ranks P⁺ among 1 + N negatives (Hits@1, MRR:
``models.scoring.metrics.ranking_metrics``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from data_prep.files.atomic import recover_dir, replace_dir, write_text_atomic
from data_prep.files.jsonl_log import JsonlLog
from data_prep.personas import shares_sentence
from models.infra.tracking import resolve_report_to, tracker_config
from models.infra.train_state import load_rng_state, load_scheduler, save_rng_state, save_scheduler
from models.loading.pretrained import with_cpu_processes
from models.networks.receiver import Receiver, pad_personas, soft_persona_scores
from models.scoring.metrics import ranking_metrics

CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE = "trainer_state.json"
LOG_FILE = "log.jsonl"


@dataclass
class ReceiverTrainingConfig:
    model_name_or_path: str = field(default="embedded", metadata={"help": "encoder: 'embedded' (all-MiniLM-L6-v2), hub id or local path"})
    output_dir: str = field(default="runs/receiver", metadata={"help": "where checkpoints, logs, metrics and the model go"})
    temperature: float = field(default=0.1, metadata={"help": "τ in s_j = u·p_j/τ"})
    max_length: int = field(default=64, metadata={"help": "tokens kept per sentence"})
    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "examples per step and process"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (on SPC, 1e-4 beat 2e-5 and 2e-4)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "linear warm-up share of max_steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 = off)"})
    margin: float = field(default=0.5, metadata={"help": "margin of the ranking loss, in units of s"})
    in_batch_negatives: bool = field(default=True, metadata={"help": "also use the other rows' personas in a batch as negatives"})
    sparsity_coef: float = field(default=0.01, metadata={"help": "weight of the normalised attention entropy"})
    eval_batch_size: int = field(default=64, metadata={"help": "sentences per encoder call when scoring"})
    encode_batch_size: int = field(default=64, metadata={
        "help": "sentences per encoder call in a training step; a step's texts are sorted by length first, so a "
                "smaller chunk pads less (the gradient is the same)"})
    eval_steps: int = field(default=0, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    logging_steps: int = field(default=10, metadata={"help": "log every N steps"})
    save_steps: int = field(default=100, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    resume: bool = field(default=False, metadata={"help": "continue from output_dir/checkpoint if it exists"})
    seed: int = field(default=0, metadata={"help": "random seed (data order, dropout)"})
    report_to: str = field(default="none", metadata={
        "help": "trackers: none, all, or comma-separated tensorboard, wandb, trackio, mlflow (any accelerate tracker)"})
    log_level: str = field(default="warning", metadata={"help": "logging level: debug, info, warning, error, critical"})
    use_cpu: bool = field(default=False, metadata={"help": "force CPU even when a GPU is present"})

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.max_steps < 0 or self.per_device_train_batch_size < 1 or self.encode_batch_size < 1:
            raise ValueError("max_steps must be >= 0, per_device_train_batch_size and encode_batch_size >= 1")
        if self.margin < 0 or self.sparsity_coef < 0:
            raise ValueError("margin and sparsity_coef must be >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        resolve_report_to(self.report_to)


# --- losses (pure) ---
def margin_ranking_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor, margin: float, neg_mask=None):
    """Masked mean over (b, k) of max(0, margin − (pos_b − neg_bk)); pos (B,), neg (B, K), neg_mask (B, K) bool."""
    gap = pos_scores.unsqueeze(1) - neg_scores  # (B, K)
    mask = torch.ones_like(gap, dtype=torch.bool) if neg_mask is None else neg_mask
    n = mask.sum().clamp(min=1)
    loss = torch.relu(margin - gap).masked_fill(~mask, 0.0).sum() / n
    stats = {"loss/margin": loss.item(), "score/gap": (gap.masked_fill(~mask, 0.0).sum() / n).item(),
             "score/accuracy": ((gap > 0) & mask).sum().item() / n.item()}
    return loss, stats


def attention_entropy(weights: torch.Tensor, mask: torch.Tensor):
    """Entropy of softmax weights over real persona sentences, divided by log M (0 = one-hot, 1 = uniform)."""
    ent = -(weights * torch.log(weights.clamp_min(1e-12))).masked_fill(~mask, 0.0).sum(-1)  # (B,)
    log_m = torch.log(mask.sum(-1).float()).clamp_min(1e-12)  # single-sentence persona: entropy 0 anyway
    loss = (ent / log_m).mean()
    return loss, {"loss/sparsity": loss.item()}


def evaluate_ranking(
    score_fn: Callable[[list[str], list[list[str]]], torch.Tensor], rows: Sequence[dict], chunk_rows: int = 128
) -> dict[str, float]:
    """Rank each row's own ``persona`` among its ``negative_personas`` with ``score_fn(utterances, personas)``."""
    return ranking_metrics(*score_ranking(score_fn, rows, chunk_rows))


def score_ranking(
    score_fn: Callable[[list[str], list[list[str]]], torch.Tensor], rows: Sequence[dict], chunk_rows: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of each row's own ``persona`` (N,) and of its ``negative_personas`` (N, K)."""
    pos, neg = [], []
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start : start + chunk_rows]
        utts, personas = [], []
        for r in chunk:
            for p in [r["persona"], *r["negative_personas"]]:
                utts.append(r["utterance"])
                personas.append(list(p))
        scores = torch.as_tensor(score_fn(utts, personas), dtype=torch.float).view(len(chunk), -1)  # (R, 1+K)
        pos.append(scores[:, 0])
        neg.append(scores[:, 1:])
    if not pos:
        raise ValueError("no evaluation rows")
    return torch.cat(pos), torch.cat(neg)


def receiver_score_fn(receiver: Receiver, batch_size: int = 64):
    receiver.clear_cache()  # weights may have changed since the cache was filled
    return lambda utts, personas: receiver.score(utts, personas, batch_size=batch_size).scores


# --- one training step's forward ---
def batch_loss(model, receiver: Receiver, batch: Sequence[dict], cfg: ReceiverTrainingConfig, device):
    """Loss of a batch of receiver rows; ``model`` is the (possibly wrapped) Receiver, called once."""
    utts = [r["utterance"] for r in batch]
    pos_personas = [list(r["persona"]) for r in batch]
    neg_personas = [list(n) for r in batch for n in r["negative_personas"]]  # (B·K) personas
    k = len(batch[0]["negative_personas"])
    texts = list(dict.fromkeys([*utts, *(s for p in pos_personas + neg_personas for s in p)]))
    index = {t: i for i, t in enumerate(texts)}
    chunks, restore = receiver.tokenize_by_length(texts, cfg.encode_batch_size)
    chunks = [{key: v.to(device) for key, v in c.items()} for c in chunks]
    table = model(chunks=chunks)[restore.to(device)]  # (S, D), same pooling as Receiver.score
    u = table[torch.tensor([index[t] for t in utts], device=device)]  # (B, D)
    pos_idx, pos_mask = (x.to(device) for x in pad_personas(pos_personas, index))
    neg_idx, neg_mask = (x.to(device) for x in pad_personas(neg_personas, index))
    pos_scores, _, pos_w = soft_persona_scores(u, table[pos_idx], pos_mask, cfg.temperature)  # (B,)
    neg_scores, _, _ = soft_persona_scores(u.repeat_interleave(k, 0), table[neg_idx], neg_mask, cfg.temperature)
    neg_scores, valid = neg_scores.view(len(batch), k), torch.ones(len(batch), k, dtype=torch.bool, device=device)
    if cfg.in_batch_negatives:  # the other rows' own personas, already encoded: more negatives for free
        n = len(batch)
        cross, _, _ = soft_persona_scores(  # row b·n + c: utterance b against persona c
            u.repeat_interleave(n, 0), table[pos_idx].repeat(n, 1, 1), pos_mask.repeat(n, 1), cfg.temperature)
        ids = [r["dialogue_id"] for r in batch]
        other = torch.tensor([[ids[a] != ids[b] and not shares_sentence(pos_personas[a], pos_personas[b])
                               for b in range(n)] for a in range(n)],
                             device=device)  # (B, B): other dialogues whose persona shares no sentence with the own
        neg_scores, valid = torch.cat([neg_scores, cross.view(n, n)], 1), torch.cat([valid, other], 1)
    margin_loss, stats = margin_ranking_loss(pos_scores, neg_scores, cfg.margin, valid)
    sparsity_loss, sparsity_stats = attention_entropy(pos_w, pos_mask)
    loss = margin_loss + cfg.sparsity_coef * sparsity_loss
    return loss, {"loss/total": loss.item(), **stats, **sparsity_stats}


class ReceiverTrainer:
    """Step-based trainer (AdamW + linear schedule) with exact resume from ``output_dir/checkpoint``.

    Args:
        receiver: the model to train (its τ should equal ``cfg.temperature``).
        cfg: hyper-parameters.
        train_rows: rows of ``data_prep.build_receiver_examples`` (same number of negatives in every row).
        eval_rows: optional rows for periodic and final evaluation.
    """

    def __init__(self, receiver: Receiver, cfg: ReceiverTrainingConfig, train_rows: Sequence[dict], eval_rows=None):
        if not train_rows:
            raise ValueError("no training rows")
        if len({len(r["negative_personas"]) for r in train_rows}) != 1:
            raise ValueError("every training row needs the same number of negative personas")
        self.cfg, self.receiver = cfg, receiver
        self.train_rows, self.eval_rows = list(train_rows), list(eval_rows or [])
        self.out = Path(cfg.output_dir)
        self.accelerator = Accelerator(**with_cpu_processes(dict(  # several processes without CUDA: gloo
            cpu=cfg.use_cpu, log_with=resolve_report_to(cfg.report_to) or None, project_dir=str(self.out))))
        set_seed(cfg.seed)
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        groups = [
            {"params": [p for n, p in receiver.named_parameters() if not any(s in n for s in no_decay)], "weight_decay": cfg.weight_decay},
            {"params": [p for n, p in receiver.named_parameters() if any(s in n for s in no_decay)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
        self.scheduler = get_scheduler("linear", optimizer, num_warmup_steps=int(cfg.warmup_ratio * cfg.max_steps),
                                       num_training_steps=max(cfg.max_steps, 1))
        # the scheduler stays out of accelerate's checkpoint (which pickles it): saved as JSON here
        self.model, self.optimizer = self.accelerator.prepare(receiver, optimizer)
        self.log = JsonlLog(self.out / LOG_FILE, self.accelerator.is_main_process)
        self.step = 0
        self.history: list[dict] = []
        self.eval_scores: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- data order: a seeded permutation per epoch, so resuming needs only the step ---
    def _batch(self, step: int) -> list[dict]:
        acc, n = self.accelerator, len(self.train_rows)
        global_bs = self.cfg.per_device_train_batch_size * acc.num_processes
        per_epoch = max(1, n // global_bs)
        epoch, pos = divmod(step, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed + epoch)).tolist()
        idx = order[pos * global_bs : (pos + 1) * global_bs]
        mine = idx[acc.process_index :: acc.num_processes] or idx[:1]
        return [self.train_rows[i] for i in mine]

    # --- checkpoints ---
    def save_checkpoint(self) -> Path:
        """Model, optimizer, scheduler, RNG states, step and log offset; written to a temp dir, fsynced and swapped into place.

        The swap (``data_prep.files.atomic.replace_dir``) never leaves a moment without a complete ``checkpoint``.
        """
        acc, final = self.accelerator, self.out / CHECKPOINT_DIR
        tmp = self.out / f".{CHECKPOINT_DIR}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        save_rng_state(tmp, acc.process_index)
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_scheduler(self.scheduler, tmp)
            state = {"step": self.step, "log_offset": self.log.offset(), "config": asdict(self.cfg)}
            write_text_atomic(tmp / TRAINER_STATE, json.dumps(state, indent=2))
            replace_dir(tmp, final)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self) -> dict | None:
        """Restore ``output_dir/checkpoint``; None when there is none. An incomplete or old-format one is an error."""
        acc, path = self.accelerator, self.out / CHECKPOINT_DIR
        if acc.is_main_process:
            recover_dir(path)  # a crash between the two renames of the fallback swap left it aside
        acc.wait_for_everyone()
        if not path.exists():
            return None
        if not (path / TRAINER_STATE).is_file():
            raise FileNotFoundError(f"{path}: no {TRAINER_STATE}; not a complete Receiver checkpoint")
        if (path / "custom_checkpoint_0.pkl").is_file():
            raise ValueError(f"{path}: written by an older p2bot that pickled the scheduler; it cannot be resumed "
                             "without unpickling (retrain, or start from a saved model)")
        acc.load_state(str(path), load_kwargs={"weights_only": True})
        load_rng_state(path, acc.process_index)
        load_scheduler(self.scheduler, path)
        state = json.loads((path / TRAINER_STATE).read_text())
        self.step = state["step"]
        saved = state.get("config", {})
        if any(saved.get(k) != getattr(self.cfg, k) for k in ("max_steps", "warmup_ratio")):
            # the optimizer holds the lr of the saved run's schedule: recompute it from this run's
            self.scheduler.last_epoch = self.step - 1
            self.scheduler.step()
        self.receiver.clear_cache()
        return state

    def _log(self, stats: dict) -> None:
        self.history.append(stats)
        self.log.append(stats)
        self.accelerator.log({k: v for k, v in stats.items() if k != "step"}, step=stats["step"])

    def evaluate(self) -> dict[str, float]:
        """Ranking metrics on ``eval_rows``; the raw scores stay in ``self.eval_scores`` (pos (N,), neg (N, K))."""
        self.model.eval()
        self.eval_scores = score_ranking(receiver_score_fn(self.receiver, self.cfg.eval_batch_size), self.eval_rows)
        return ranking_metrics(*self.eval_scores)

    def train(self) -> dict:
        """Run to ``cfg.max_steps``; returns ``{"steps", "train_seconds", "final_eval"?}``."""
        cfg, acc = self.cfg, self.accelerator
        state = self.load_checkpoint() if cfg.resume else None
        if state is not None:
            acc.print(f"resumed from {self.out / CHECKPOINT_DIR} at step {self.step}")
        elif cfg.resume:
            acc.print(f"resume: no checkpoint in {self.out}, starting from step 0")
        self.log.truncate((state or {}).get("log_offset", 0))  # what was logged after the checkpoint is logged again
        if acc.log_with:
            init = {"tensorboard": {"purge_step": self.step + 1}} if state else {}
            acc.init_trackers("receiver", config=tracker_config(asdict(cfg)), init_kwargs=init)
        start, started = self.step, time.time()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="receiver", disable=not acc.is_local_main_process)
        running: dict[str, float] = {}
        seen = 0
        self.model.train()
        while self.step < cfg.max_steps:
            # --- forward / backward ---
            loss, stats = batch_loss(self.model, self.receiver, self._batch(self.step), cfg, acc.device)
            acc.backward(loss)
            if cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
            self.step += 1
            bar.update(1)
            # --- logging / eval / checkpoint ---
            for key, value in stats.items():
                running[key] = running.get(key, 0.0) + value
            seen += 1
            if self.step % max(cfg.logging_steps, 1) == 0 or self.step == cfg.max_steps:
                logged = {"step": self.step, "lr": self.scheduler.get_last_lr()[0], **{k: v / seen for k, v in running.items()}}
                running, seen = {}, 0
                bar.set_postfix(loss=f"{logged['loss/total']:.3f}", acc=f"{logged['score/accuracy']:.2f}")
                self._log(logged)
            if cfg.eval_steps and self.eval_rows and self.step % cfg.eval_steps == 0 and self.step < cfg.max_steps:
                self._log({"step": self.step, **{f"eval/{k}": v for k, v in self.evaluate().items()}})
                self.model.train()
            if cfg.save_steps and self.step % cfg.save_steps == 0:
                self.save_checkpoint()
        bar.close()
        self.model.eval()
        result = {"steps": self.step, "train_seconds": time.time() - started, "processes": acc.num_processes}
        if self.step > start:
            self.save_checkpoint()
        if self.eval_rows:
            result["final_eval"] = self.evaluate()
            self._log({"step": self.step, **{f"eval/{k}": v for k, v in result["final_eval"].items()}})
        for tracker in acc.trackers:  # not end_training(): that also ends the process group save_model still needs
            tracker.finish()
        return result

    def save_model(self, save_directory: str | os.PathLike) -> Path | None:
        """Write the trained Receiver (``Receiver.save_pretrained``) from the main process; its model card gets
        this run's config and last evaluation."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            model = self.accelerator.unwrap_model(self.model)
            final = ranking_metrics(*self.eval_scores) if self.eval_scores is not None else {}
            model.card.update(stage="receiver", config=asdict(self.cfg), metrics={f"eval/{k}": v for k, v in final.items()})
            return model.save_pretrained(save_directory)
        return None
