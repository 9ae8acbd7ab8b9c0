"""``PPOTrainer``: one PPO / REINFORCE / RLOO / GRPO update from query/response tokens and scores, whatever produced them.

``step(rollouts)`` is the core: users with their own environment call it directly; ``rl.loop.train`` drives it
with self-play. Stages inside a step: layout (rows: turns or speaker episodes, ``rl.episodes``) → experience
(old/ref log-probs, values, what each auxiliary loss needs) → advantages (``rl.algorithms``) → update → stats.
Auxiliary terms (guards against reward hacks) join the loss through ``rl.guards.base.AuxLoss``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from accelerate import Accelerator
from transformers import get_scheduler
from trl.trainer.utils import disable_dropout_in_model

from models.generation.sampling import stop_token_ids
from models.infra.profiling import NULL_PROFILER
from rl.advantages import kl_penalty, whiten
from rl.algorithms import ALGO_SPECS, compute_advantages
from rl.config import PPOConfig
from rl.distributed import (
    all_ranks,
    build_accelerator,
    check_accumulation,
    configure_deepspeed,
    is_deepspeed,
    mean_over_processes,
    reward_components,
    zero_stage,
)
from rl.episodes import LAYOUTS
from rl.experience import Experience, Rollout, micro_batches, trim_left
from rl.forward import PolicyOutput, autocast, memo_or_forward, policy_forward
from rl.guards import AuxLoss, build_aux_losses
from rl.kl import build_kl_controller
from rl.losses import entropy_loss, kl_loss, policy_loss, reinforce_loss, value_loss

__all__ = ["PPOTrainer", "build_accelerator", "is_deepspeed", "zero_stage"]

logger = logging.getLogger(__name__)


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
        aux_losses: ``rl.guards.base.AuxLoss`` terms added to the loss besides those ``config`` turns on
            (``rl.guards.build_aux_losses``); names must be unique.
    """

    def __init__(self, config: PPOConfig, policy, ref_policy=None, reward_fn=None, accelerator: Accelerator | None = None,
                 value_model=None, end_token_ids=None, lagged_partner=None, aux_losses: Sequence[AuxLoss] = ()):
        self.config = config
        self.accelerator = accelerator or build_accelerator(config)
        check_accumulation(self.accelerator, config)
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
        configure_deepspeed(self.accelerator, config)
        self.model, self.optimizer = self.accelerator.prepare(policy, optimizer)  # the scheduler: rl.checkpoint, as JSON
        self.ref_model = self._prepare_ref(ref_policy)
        self.aux_losses = [*build_aux_losses(config, self.tokenizer), *aux_losses]
        names = [a.name for a in self.aux_losses]
        if len(set(names)) != len(names):
            raise ValueError(f"auxiliary losses {names}: each needs its own name (its exp.aux key and loss/<name> stat)")
        self.lagged_partner = lagged_partner
        if lagged_partner is not None:  # the partner starts as the policy's start point
            with self.generation_model() as bare:
                lagged_partner.sync(bare, 0)
        self.kl_ctl = build_kl_controller(config.kl_coef, config.adaptive_kl, config.target_kl, config.kl_horizon)
        # bench profile sets a PhaseProfiler; ref_memo: a LogprobMemo a scorer fills (rl.forward.memo_or_forward)
        self.global_step, self.profiler, self.ref_memo = 0, NULL_PROFILER, None

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
        with gather, torch.no_grad(), autocast(self.config.bf16, self.accelerator.device):
            model.eval()
            try:
                yield model
            finally:
                model.train()

    def _forward(self, model, exp: Experience, with_values: bool, with_entropy: bool = False,
                 with_logits: bool = False) -> PolicyOutput:
        """``rl.forward.policy_forward``; the entropy is a logged statistic (no gradients) unless entropy_coef > 0."""
        with autocast(self.config.bf16, self.accelerator.device):
            return policy_forward(model, exp, with_values, with_entropy, entropy_grad=self.config.entropy_coef > 0,
                                  with_logits=with_logits)

    def _ref_logprobs(self, exp: Experience) -> torch.Tensor | None:
        if self.ref_model is None and not self.use_peft:
            return None
        # the frozen reference, or with LoRA the policy without its adapter
        model, context = ((self.ref_model, contextlib.nullcontext) if self.ref_model is not None
                          else (self.model, self.policy.lm.disable_adapter))

        def forward(part):
            with context():
                return self._forward(model, part, with_values=False)[0]
        return memo_or_forward(self.ref_memo, exp, forward)

    def _all_ranks(self, flag: bool) -> bool:
        return all_ranks(self.accelerator, flag)

    def make_experience(self, rollouts: list[Rollout]) -> tuple[Experience, list[list[Rollout]]]:
        """Lay rollouts out in rows (``episode_layout``) and add what each auxiliary loss needs, old log-probs,
        reference log-probs and old values.

        Returns the ``Experience`` and each row's rollouts (one per own turn, in order).
        """
        layout = LAYOUTS[self.config.episode_layout](rollouts, self.pad_token_id, self.accelerator.device)
        exp = layout.experience
        for aux in self.aux_losses:
            aux.prepare(exp, layout.rows)
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
                part = trim_left(exp.select(idx))
                with self.profiler.phase("experience/policy_forward", tokens := int(part.attention_mask.sum())):
                    out = self._forward(self.model, part, with_values=self.spec.critic)
                old.append(out.logprobs)
                values.append(out.values)
                with self.profiler.phase("experience/reference_forward", tokens):
                    ref.append(self._ref_logprobs(part))
            self.model.train()
        exp.old_logprobs = torch.cat(old)
        exp.old_values = torch.cat(values) if values[0] is not None else None
        exp.ref_logprobs = torch.cat(ref) if ref[0] is not None else None
        if self.ref_memo is not None:
            self.ref_memo.clear()
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

    def _loss(self, mb: Experience) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, spec, mask = self.config, self.spec, mb.response_mask
        out = self._forward(self.model, mb, with_values=spec.critic, with_entropy=True,
                            with_logits=any(aux.needs_logits for aux in self.aux_losses))
        if spec.clipped:
            pg_loss, stats = policy_loss(out.logprobs, mb.old_logprobs, mb.advantages, mask, cfg.cliprange)
        else:
            pg_loss, stats = reinforce_loss(out.logprobs, mb.advantages, mask)
        ent_loss, ent_stats = entropy_loss(out.entropy, mask)
        loss = pg_loss + cfg.entropy_coef * ent_loss
        stats = {**stats, **ent_stats, "loss/policy": pg_loss.detach()}
        if spec.critic:
            vmask = mb.value_mask if mb.value_mask is not None else mask
            vf_loss, vf_stats = value_loss(out.values, mb.old_values, mb.returns, vmask, cfg.cliprange_value)
            loss = loss + cfg.vf_coef * vf_loss
            stats.update(vf_stats, **{"loss/value": vf_loss.detach()})
        if spec.kl_in_loss and mb.ref_logprobs is not None:
            k_loss, k_stats = kl_loss(out.logprobs, mb.ref_logprobs, mask)
            loss = loss + self.kl_ctl.value * k_loss
            stats.update(k_stats, **{"loss/kl": k_loss.detach()})
        for aux in self.aux_losses:
            a_loss, a_stats = aux.loss(out, mb)
            loss = loss + aux.coef * a_loss
            stats.update(a_stats, **{f"loss/{aux.name}": a_loss.detach()})
        stats["loss/total"] = loss.detach()
        return loss, stats

    def update(self, exp: Experience) -> dict[str, float]:
        """``num_ppo_epochs`` passes of ``num_mini_batches`` optimizer steps, each over ``gradient_accumulation_steps``
        micro-batches weighted by their trained tokens (``rl.experience.micro_batches``).

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
        for _epoch in range(cfg.num_ppo_epochs):
            perm = torch.randperm(len(exp))
            for mb_idx in perm.tensor_split(n_mb):
                bad_in_mb = False
                for micro, weight in micro_batches(exp, mb_idx.to(exp.input_ids.device), n_acc):
                    with acc.accumulate(self.model):
                        with self.profiler.phase("update/forward", tokens := int(micro.attention_mask.sum())):
                            loss, stats = self._loss(micro)
                        if self._all_ranks(bool(torch.isfinite(loss))):
                            with self.profiler.phase("update/backward", tokens):
                                acc.backward(loss * weight)
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
                                with self.profiler.phase("update/optimizer"):
                                    self.optimizer.step()
                                    self.scheduler.step()
                            self.optimizer.zero_grad()
        if skipped_micro:
            logger.warning("NaN/inf loss in %d micro-batch(es) at step %d: their updates were skipped", skipped_micro, self.global_step)
        out = {k: sum(v) / len(v) for k, v in sums.items()}
        out["guard/skipped_microbatches"] = float(skipped_micro)
        out["guard/skipped_optimizer_steps"] = float(skipped_steps)
        return out

    def step(self, rollouts: list[Rollout]) -> dict[str, float]:
        """One update from ``rollouts`` (query ids, response ids, score; ``group`` keys the REINFORCE baseline).

        Every process must pass the same number of rollouts. Returns metrics averaged over processes, namespaced
        ``loss/*``, ``policy/*``, ``value/*``, ``objective/*``, ``reward/*``, ``guard/*``.
        """
        if not rollouts:
            raise ValueError("step() needs at least one rollout")
        exp, rows = self.make_experience(rollouts)
        inputs_ok = all(bool(torch.isfinite(t[exp.response_mask.bool()]).all()) for t in
                        (exp.old_logprobs, exp.ref_logprobs, exp.old_values) if t is not None)
        inputs_ok = inputs_ok and bool(torch.isfinite(exp.turn_scores[exp.turn_mask > 0]).all())
        stats: dict[str, float] = {}
        if not self._all_ranks(inputs_ok):
            logger.warning("step %d: non-finite scores, log-probs or values; the update is skipped", self.global_step)
            stats["guard/skipped_update"] = 1.0
        else:
            stats.update(self.compute_advantages(exp, rows))
            stats.update(self.update(exp))
            stats["guard/skipped_update"] = 0.0
        stats = mean_over_processes(self.accelerator, stats)
        stats.update(reward_components(self.accelerator, rollouts))
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


