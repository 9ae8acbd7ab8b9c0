"""``PPOTrainer``: one PPO / REINFORCE / RLOO / GRPO update from query/response tokens and scores, whatever produced them.

``step(rollouts)`` is the core: users with their own environment call it directly; ``rl.loop.train`` drives it
with self-play. Stages inside a step: layout (rows: turns or speaker episodes, ``rl.episodes``) → experience
(old/ref log-probs, values) → advantages (``rl.algorithms``) → update → stats.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterator

import torch
from accelerate import Accelerator
from transformers import get_scheduler
from trl.trainer.utils import disable_dropout_in_model, entropy_from_logits, selective_log_softmax

from models.generation.sampling import stop_token_ids
from models.infra.tracking import resolve_report_to
from rl.advantages import kl_penalty, whiten
from rl.algorithms import ALGO_SPECS, compute_advantages
from rl.anchor import persona_anchor_rollouts
from rl.config import PPOConfig
from rl.episodes import LAYOUTS
from rl.experience import Experience, Rollout, collate
from rl.guards.copy_guard import CopyGuard
from rl.kl import build_kl_controller
from rl.losses import (
    anchor_loss,
    copy_unlikelihood_loss,
    entropy_loss,
    kl_loss,
    policy_loss,
    reinforce_loss,
    value_loss,
)

logger = logging.getLogger(__name__)


def build_accelerator(config: PPOConfig, **kwargs) -> Accelerator:
    """An ``Accelerator`` for ``config``, logging to its ``report_to`` trackers (files under ``output_dir``); a
    multi-process run without CUDA uses gloo (``models.loading.pretrained.with_cpu_processes``)."""
    from accelerate.utils import ProjectConfiguration

    from models.loading.pretrained import with_cpu_processes

    trackers = resolve_report_to(config.report_to)
    kwargs.setdefault("log_with", trackers or None)
    kwargs.setdefault("project_config", ProjectConfiguration(project_dir=config.output_dir,
                                                             logging_dir=os.path.join(config.output_dir, "tracking")))
    return Accelerator(**with_cpu_processes(dict(kwargs, gradient_accumulation_steps=config.gradient_accumulation_steps)))


def is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.state.deepspeed_plugin is not None


def zero_stage(accelerator: Accelerator) -> int:
    plugin = accelerator.state.deepspeed_plugin
    return int(plugin.zero_stage) if plugin is not None else 0


class PPOTrainer:
    """PPO / REINFORCE / RLOO / GRPO over a ``Transmitter`` policy (``config.algo``, see ``rl.algorithms``).

    Args:
        config: the run's ``PPOConfig``.
        policy: a ``models.networks.transmitter.Transmitter``; with ``algo='ppo'`` it needs a value head, unless a
            ``value_model`` is given.
        ref_policy: frozen reference for the KL term; None with a LoRA policy means the adapter-disabled base,
            None otherwise means no KL term (β is then ignored).
        reward_fn: optional; kept for ``rl.loop.train`` (``step`` only needs scores on the rollouts).
        accelerator: built with ``build_accelerator(config)`` if not given.
        value_model: a separate critic (a Transmitter with a value head, same tokenizer), trained with the policy.
        lagged_partner: a ``rl.partner.LaggedPartner``, synced from the policy every ``partner_sync_steps`` steps.
        end_token_ids: the tokens that close a response (``missing_eos_penalty``); default: the tokenizer's EOS and
            the chat format's end-of-turn token.
        formatter: the ``models.prompting.prompt.PromptFormatter`` whose responses the policy produces (the persona anchor
            encodes persona sentences with it); default: one over the policy's tokenizer.
    """

    def __init__(self, config: PPOConfig, policy, ref_policy=None, reward_fn=None, accelerator: Accelerator | None = None,
                 value_model=None, end_token_ids=None, lagged_partner=None, formatter=None):
        self.config = config
        self.accelerator = accelerator or build_accelerator(config)
        if self.accelerator.gradient_accumulation_steps != config.gradient_accumulation_steps:
            raise ValueError(
                f"accelerator.gradient_accumulation_steps={self.accelerator.gradient_accumulation_steps} differs from "
                f"config.gradient_accumulation_steps={config.gradient_accumulation_steps} (under DeepSpeed, set "
                "deepspeed_config.gradient_accumulation_steps in the accelerate config to the same value)"
            )
        self.spec = ALGO_SPECS[config.algo]
        if value_model is not None:
            from models.networks.critic import PolicyWithCritic

            policy = PolicyWithCritic(policy, value_model)
        if self.spec.critic and getattr(policy, "value_head", None) is None:
            raise ValueError("algo='ppo' needs a critic: a policy with a value head (Transmitter.from_pretrained(..., "
                             "with_value_head=True)) or value_model_name_or_path")
        self.reward_fn = reward_fn
        self.tokenizer = policy.tokenizer
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.use_peft = hasattr(policy.lm, "disable_adapter")
        self.end_token_ids = set(end_token_ids if end_token_ids is not None else stop_token_ids(self.tokenizer))
        for p in policy.nup_head.parameters():  # RL does not train the NUP head (and DDP must not wait for its grads)
            p.requires_grad_(False)
        if not self.spec.critic and policy.value_head is not None:
            for p in policy.value_head.parameters():
                p.requires_grad_(False)
        disable_dropout_in_model(policy)
        if config.gradient_checkpointing:
            policy.activation_checkpointing_enable()
        params = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        total = config.max_steps * config.num_ppo_epochs * config.num_mini_batches
        # Not passed to prepare(): accelerate would step a prepared scheduler once per process.
        self.scheduler = get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=config.warmup_steps,
                                       num_training_steps=total)
        self._configure_deepspeed()
        self.model, self.optimizer = self.accelerator.prepare(policy, optimizer)  # the scheduler: rl.checkpoint, as JSON
        self.ref_model = self._prepare_ref(ref_policy)
        if config.persona_anchor_coef > 0 and self.ref_model is None and not self.use_peft:
            raise ValueError("persona_anchor_coef > 0 measures the rise of persona sentences' log-probability above a "
                             "reference policy: give a ref_policy (or a LoRA policy, whose base is the reference)")
        if formatter is None and config.persona_anchor_coef > 0:
            from models.prompting.prompt import PromptFormatter

            formatter = PromptFormatter(self.tokenizer)
        self.formatter = formatter
        self.copy_guard = CopyGuard(self.tokenizer, config.copy_guard_threshold) if config.copy_guard_coef > 0 else None
        self.lagged_partner = lagged_partner
        if lagged_partner is not None:  # the partner starts as the policy's start point
            with self.generation_model() as bare:
                lagged_partner.sync(bare, 0)
        self.kl_ctl = build_kl_controller(config.kl_coef, config.adaptive_kl, config.target_kl, config.kl_horizon)
        self.global_step = 0

    # --- setup helpers ---
    def _configure_deepspeed(self) -> None:
        """No dataloader goes through ``prepare``, so DeepSpeed needs its micro-batch size spelled out."""
        plugin = self.accelerator.state.deepspeed_plugin
        if plugin is None:
            return
        ds = plugin.deepspeed_config
        if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            ds["train_micro_batch_size_per_gpu"] = 1  # only used by DeepSpeed's throughput bookkeeping here
        if ds.get("gradient_accumulation_steps", "auto") == "auto":
            ds["gradient_accumulation_steps"] = self.config.gradient_accumulation_steps
        elif int(ds["gradient_accumulation_steps"]) != self.config.gradient_accumulation_steps:
            raise ValueError(f"DeepSpeed config gradient_accumulation_steps={ds['gradient_accumulation_steps']} differs from "
                             f"gradient_accumulation_steps={self.config.gradient_accumulation_steps}")
        if ds.get("gradient_clipping", "auto") == "auto":
            ds["gradient_clipping"] = self.config.max_grad_norm

    def _prepare_ref(self, ref_policy):
        if ref_policy is None:
            return None
        ref_policy.eval().requires_grad_(False)
        disable_dropout_in_model(ref_policy)
        if zero_stage(self.accelerator) == 3:
            from trl.models.utils import prepare_deepspeed

            return prepare_deepspeed(ref_policy, self.accelerator)
        return ref_policy.to(self.accelerator.device)

    @property
    def policy(self):
        """The bare ``Transmitter`` (unwrapped from DDP/DeepSpeed)."""
        return self.accelerator.unwrap_model(self.model)

    @contextlib.contextmanager
    def generation_model(self) -> Iterator:
        """The bare policy in eval mode for sampling; under ZeRO-3 its parameters are gathered meanwhile."""
        model = self.policy
        gather = contextlib.nullcontext()
        if zero_stage(self.accelerator) == 3:
            import deepspeed

            gather = deepspeed.zero.GatheredParameters(list(self.model.parameters()))
        with gather, torch.no_grad():
            model.eval()
            try:
                yield model
            finally:
                model.train()

    # --- forward ---
    def _forward(self, model, exp: Experience, with_values: bool, with_entropy: bool = False, with_logits: bool = False):
        """Per-token log-probs (B, R), entropy (B, R) or None, values (B, R) or None of the trained tokens, and their
        logits (B, R, V) when ``with_logits``, else None.

        The LM head runs only at ``exp.response_index``; log-probs, entropy and logits are of ``logits / temperature``,
        the distribution each row was sampled from.
        """
        B, R = exp.response_ids.shape
        out = model(input_ids=exp.input_ids, attention_mask=exp.attention_mask, with_values=with_values,
                    logits_to_keep=exp.response_index)
        V = out.logits.shape[-1]
        logits = out.logits.float() / exp.temperature.to(out.logits.device)[:, None, None]  # (B, R, V)
        # one flat row: TRL's helper loops over the first dimension, which is slow on CPU for (B, R, V)
        logprobs = selective_log_softmax(logits.reshape(1, B * R, V), exp.response_ids.reshape(1, B * R)).reshape(B, R)
        entropy = None
        if with_entropy:  # only a logged statistic unless entropy_coef > 0; then it needs gradients
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.entropy_coef > 0):
                entropy = entropy_from_logits(logits)  # (B, R)
        values = out.values.gather(1, exp.response_index).float() if with_values else None  # (B, R)
        return logprobs, entropy, values, (logits if with_logits else None)

    def _ref_logprobs(self, exp: Experience) -> torch.Tensor | None:
        if self.ref_model is not None:
            return self._forward(self.ref_model, exp, with_values=False)[0]
        if self.use_peft:
            with self.policy.lm.disable_adapter():
                return self._forward(self.model, exp, with_values=False)[0]
        return None

    def _anchor_experience(self, rollouts: list[Rollout]) -> Experience | None:
        """The persona anchor's rows (``rl.anchor``) with their reference log-probs, or None when it is off. It is
        off for the whole step when any process has fewer rows than micro-batches (every process must run the
        same forwards under ZeRO-3)."""
        if self.config.persona_anchor_coef <= 0:
            return None
        anchors = persona_anchor_rollouts(rollouts, lambda text: self.formatter.encode_response(text)[:-1], self.global_step)
        if not self._all_ranks(len(anchors) >= self.config.gradient_accumulation_steps):
            return None
        exp = collate(anchors, self.pad_token_id, self.accelerator.device)
        # the reference forward in as many chunks as the update has micro-batches (the same count on every
        # process, as ZeRO-3 needs): one chunk's logits at a time, as make_experience does
        chunks = torch.arange(len(exp), device=exp.input_ids.device).tensor_split(self.config.gradient_accumulation_steps)
        with torch.no_grad():
            ref = [self._ref_logprobs(exp.select(idx)) for idx in chunks]
        exp.ref_logprobs = torch.cat(ref) if ref[0] is not None else None
        return exp

    def _copy_candidates(self, rows: list[list[Rollout]], width: int) -> torch.Tensor:
        """(B, R, M) the copy guard's token ids at each trained token (-1 pads; M ≥ 1); rows' own turns lie end to end
        in the response columns, as both episode layouts put them. Rollouts without a persona, or scored None, get
        none."""
        per_row = []
        for row in rows:
            sets: list[set[int]] = []
            for r in row:
                persona = r.info.get("persona")
                if r.score is not None and persona:
                    sets.extend(self.copy_guard.candidates(r.response_ids, persona))
                else:
                    sets.extend(set() for _ in r.response_ids)
            per_row.append(sets)
        m = max([1] + [len(c) for sets in per_row for c in sets])
        out = torch.full((len(rows), width, m), -1, dtype=torch.long)
        for b, sets in enumerate(per_row):
            for t, c in enumerate(sets[:width]):
                out[b, t, :len(c)] = torch.tensor(sorted(c), dtype=torch.long)
        return out

    def _all_ranks(self, flag: bool) -> bool:
        """True when ``flag`` holds on every process."""
        t = torch.tensor([0.0 if flag else 1.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() == 0)

    # --- stages ---
    def make_experience(self, rollouts: list[Rollout]) -> tuple[Experience, list[list[Rollout]]]:
        """Lay rollouts out in rows (``episode_layout``) and add old log-probs, reference log-probs and old values.

        Returns the ``Experience`` and each row's rollouts (one per own turn, in order).
        """
        layout = LAYOUTS[self.config.episode_layout](rollouts, self.pad_token_id, self.accelerator.device)
        exp = layout.experience
        if self.copy_guard is not None:
            exp.copy_candidates = self._copy_candidates(layout.rows, exp.response_ids.shape[1]).to(exp.input_ids.device)
        if self.config.missing_eos_penalty is not None:
            missing = torch.tensor([[not self.end_token_ids & set(r.response_ids) for r in row]
                                    + [False] * (exp.turn_scores.shape[1] - len(row)) for row in layout.rows],
                                   device=exp.turn_scores.device)  # (B, K)
            exp.turn_scores = exp.turn_scores - self.config.missing_eos_penalty * missing.float()
        # no-grad forwards in chunks the size of a training micro-batch: their logits and hidden states need not
        # all be held at once (peak memory is then set by the update, not by this stage)
        chunks = torch.arange(len(exp), device=exp.input_ids.device).tensor_split(
            min(len(exp), self.config.num_mini_batches * self.config.gradient_accumulation_steps))
        old, ref, values = [], [], []
        with torch.no_grad():
            self.model.eval()
            for idx in chunks:
                part = exp.select(idx)
                logprobs, _, v, _ = self._forward(self.model, part, with_values=self.spec.critic)
                old.append(logprobs)
                values.append(v)
                ref.append(self._ref_logprobs(part))
            self.model.train()
        exp.old_logprobs = torch.cat(old)
        exp.old_values = torch.cat(values) if values[0] is not None else None
        exp.ref_logprobs = torch.cat(ref) if ref[0] is not None else None
        return exp, layout.rows

    def compute_advantages(self, exp: Experience, rows: list[list[Rollout]]) -> dict[str, float]:
        """Fill ``exp.advantages`` (and ``exp.returns``/``value_mask`` for PPO); returns the objective's statistics."""
        cfg, mask = self.config, exp.response_mask
        ref = exp.ref_logprobs if exp.ref_logprobs is not None else exp.old_logprobs
        kl = kl_penalty(exp.old_logprobs, ref, cfg.kl_estimator) * mask  # (B, R)
        beta = self.kl_ctl.value if (exp.ref_logprobs is not None) else 0.0
        compute_advantages(self.spec, exp, rows, kl, beta, estimator=cfg.advantage_estimator,
                           baseline=cfg.reinforce_baseline if cfg.algo == "reinforce" else None, gamma=cfg.gamma,
                           lam=cfg.lam, whiten_rewards=(lambda r, m: whiten(r, m, shift_mean=False)) if cfg.whiten_rewards else None)
        if cfg.whiten_advantages:
            exp.advantages = whiten(exp.advantages, mask)
        turn_kl = kl.sum(1) / exp.turn_mask.sum(1).clamp(min=1)  # (B,) KL per turn, comparable across layouts
        in_reward = 0.0 if self.spec.kl_in_loss else beta
        return {"objective/kl": turn_kl.mean().item(),
                "objective/scores": (exp.scores / exp.turn_mask.sum(1).clamp(min=1)).mean().item(),
                "objective/non_score_reward": (-in_reward * turn_kl).mean().item(), "objective/kl_coef": beta,
                "response/length": (mask.sum(1) / exp.turn_mask.sum(1).clamp(min=1)).mean().item()}

    def _loss(self, mb: Experience, anchor: Experience | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, spec, mask = self.config, self.spec, mb.response_mask
        guard = cfg.copy_guard_coef > 0 and mb.copy_candidates is not None
        logprobs, entropy, values, logits = self._forward(self.model, mb, with_values=spec.critic, with_entropy=True,
                                                          with_logits=guard)
        if spec.clipped:
            pg_loss, stats = policy_loss(logprobs, mb.old_logprobs, mb.advantages, mask, cfg.cliprange)
        else:
            pg_loss, stats = reinforce_loss(logprobs, mb.advantages, mask)
        ent_loss, ent_stats = entropy_loss(entropy, mask)
        loss = pg_loss + cfg.entropy_coef * ent_loss
        stats = {**stats, **ent_stats, "loss/policy": pg_loss.detach()}
        if spec.critic:
            vmask = mb.value_mask if mb.value_mask is not None else mask
            vf_loss, vf_stats = value_loss(values, mb.old_values, mb.returns, vmask, cfg.cliprange_value)
            loss = loss + cfg.vf_coef * vf_loss
            stats.update(vf_stats, **{"loss/value": vf_loss.detach()})
        if spec.kl_in_loss and mb.ref_logprobs is not None:
            k_loss, k_stats = kl_loss(logprobs, mb.ref_logprobs, mask)
            loss = loss + self.kl_ctl.value * k_loss
            stats.update(k_stats, **{"loss/kl": k_loss.detach()})
        if guard:
            g_loss, g_stats = copy_unlikelihood_loss(logits, mb.copy_candidates, mask)
            loss = loss + cfg.copy_guard_coef * g_loss
            stats.update(g_stats, **{"loss/copy_guard": g_loss.detach()})
        if anchor is not None:
            a_logprobs = self._forward(self.model, anchor, with_values=False)[0]
            a_loss, a_stats = anchor_loss(a_logprobs, anchor.ref_logprobs, anchor.response_mask)
            loss = loss + cfg.persona_anchor_coef * a_loss
            stats.update(a_stats, **{"loss/anchor": a_loss.detach()})
        stats["loss/total"] = loss.detach()
        return loss, stats

    def update(self, exp: Experience, anchor: Experience | None = None) -> dict[str, float]:
        """``num_ppo_epochs`` passes of ``num_mini_batches`` optimizer steps, each over ``gradient_accumulation_steps`` micro-batches.

        ``anchor`` (the persona anchor's rows) is split over each mini-batch's micro-batches, so that every
        optimizer step sees all of it once.

        A micro-batch whose loss is NaN/inf on any process gets no backward anywhere; without DeepSpeed its
        mini-batch's optimizer step is dropped, under DeepSpeed (which steps inside ``backward``) the step still
        applies the other micro-batches' gradients. Counts come back as ``guard/*``.
        """
        cfg, acc = self.config, self.accelerator
        n_mb, n_acc = cfg.num_mini_batches, cfg.gradient_accumulation_steps
        if len(exp) < n_mb * n_acc:
            raise ValueError(f"{len(exp)} rollouts cannot fill num_mini_batches*gradient_accumulation_steps={n_mb * n_acc} micro-batches")
        sums: dict[str, list[float]] = defaultdict(list)
        skipped_micro = skipped_steps = 0
        self.model.train()
        anchor_parts = torch.arange(len(anchor)).tensor_split(n_acc) if anchor is not None else [None] * n_acc
        for _epoch in range(cfg.num_ppo_epochs):
            perm = torch.randperm(len(exp))
            for mb_idx in perm.tensor_split(n_mb):
                bad_in_mb = False
                for micro_idx, anchor_idx in zip(mb_idx.tensor_split(n_acc), anchor_parts):
                    with acc.accumulate(self.model):
                        part = anchor.select(anchor_idx.to(anchor.input_ids.device)) if anchor is not None else None
                        loss, stats = self._loss(exp.select(micro_idx.to(exp.input_ids.device)), part)
                        if self._all_ranks(bool(torch.isfinite(loss))):
                            acc.backward(loss)
                            for k, v in stats.items():
                                sums[k].append(float(v))
                        else:  # NaN/inf guard: this micro-batch contributes nothing, on every process
                            skipped_micro += 1
                            bad_in_mb = True
                            if is_deepspeed(acc):  # DeepSpeed counts backward calls to find its step boundary
                                acc.backward(sum((p * 0.0).sum() for p in self.model.parameters() if p.requires_grad))
                        if acc.sync_gradients:
                            if cfg.max_grad_norm and not is_deepspeed(acc):
                                acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                            if bad_in_mb and not is_deepspeed(acc):
                                skipped_steps += 1  # drop the partial step rather than apply it
                            else:
                                self.optimizer.step()
                                self.scheduler.step()
                            self.optimizer.zero_grad()
        if skipped_micro:
            logger.warning("NaN/inf loss in %d micro-batch(es) at step %d: their updates were skipped", skipped_micro, self.global_step)
        out = {k: sum(v) / len(v) for k, v in sums.items()}
        out["guard/skipped_microbatches"] = float(skipped_micro)
        out["guard/skipped_optimizer_steps"] = float(skipped_steps)
        return out

    # --- the public step ---
    def step(self, rollouts: list[Rollout]) -> dict[str, float]:
        """One update from ``rollouts`` (query ids, response ids, score; ``group`` keys the REINFORCE baseline).

        Every process must pass the same number of rollouts. Returns metrics averaged over processes, namespaced
        ``loss/*``, ``policy/*``, ``value/*``, ``objective/*``, ``reward/*``, ``guard/*``.
        """
        if not rollouts:
            raise ValueError("step() needs at least one rollout")
        # --- experience ---
        exp, rows = self.make_experience(rollouts)
        inputs_ok = all(bool(torch.isfinite(t[exp.response_mask.bool()]).all()) for t in
                        (exp.old_logprobs, exp.ref_logprobs, exp.old_values) if t is not None)
        inputs_ok = inputs_ok and bool(torch.isfinite(exp.turn_scores[exp.turn_mask > 0]).all())
        stats: dict[str, float] = {}
        if not self._all_ranks(inputs_ok):
            logger.warning("step %d: non-finite scores, log-probs or values; the update is skipped", self.global_step)
            stats["guard/skipped_update"] = 1.0
        else:
            # --- advantages ---
            stats.update(self.compute_advantages(exp, rows))
            # --- update ---
            stats.update(self.update(exp, self._anchor_experience(rollouts)))
            stats["guard/skipped_update"] = 0.0
        stats = self._reduce(stats)
        stats.update(self._reward_components(rollouts))
        if not stats["guard/skipped_update"]:  # the KL averaged over processes, so every process keeps the same β
            self.kl_ctl.update(stats["objective/kl"], int(exp.turn_mask.sum().item()) * self.accelerator.num_processes)
        stats["lr"] = self.scheduler.get_last_lr()[0]
        self.global_step += 1
        if self.lagged_partner is not None and self.lagged_partner.due(self.global_step):
            with self.generation_model() as policy:  # gathered under ZeRO-3
                self.lagged_partner.sync(policy, self.global_step)
        if self.lagged_partner is not None:
            stats["partner/synced_at"] = float(self.lagged_partner.synced_at)
        return stats

    def _reduce(self, stats: dict[str, float]) -> dict[str, float]:
        """Average every metric over processes (all processes hold the same keys)."""
        if self.accelerator.num_processes == 1:
            return stats
        keys = sorted(stats)
        t = torch.tensor([stats[k] for k in keys], device=self.accelerator.device, dtype=torch.float64)
        t = self.accelerator.reduce(t, reduction="mean")
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def _reward_components(self, rollouts: list[Rollout]) -> dict[str, float]:
        """``reward/<name>``: each component's mean over every process's rollouts. The names are agreed across
        processes first, so a component that no rollout of one process has still gets one key everywhere."""
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for r in rollouts:
            for k, v in r.components.items():
                if v is not None and math.isfinite(v):
                    sums[k][0] += float(v)
                    sums[k][1] += 1.0
        names = sorted(sums)
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            names = sorted(set().union(*gather_object([names])))
            t = torch.tensor([sums[n][i] if n in sums else 0.0 for n in names for i in (0, 1)],
                             device=self.accelerator.device, dtype=torch.float64)
            t = self.accelerator.reduce(t, reduction="sum").tolist()
            sums = {n: [t[2 * j], t[2 * j + 1]] for j, n in enumerate(names)}
        return {f"reward/{n}": sums[n][0] / sums[n][1] if sums[n][1] else float("nan") for n in names}

    # --- state for checkpoints ---
    def save_extra_state(self, directory) -> None:
        """Main process, inside a checkpoint being written: what ``accelerator.save_state`` does not hold."""
        if self.lagged_partner is not None:
            self.lagged_partner.save(directory)

    def load_extra_state(self, directory) -> None:
        if self.lagged_partner is not None:
            self.lagged_partner.load(directory)

    def state_dict(self) -> dict:
        return {"global_step": self.global_step, "kl_ctl": self.kl_ctl.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.global_step = int(state["global_step"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])


