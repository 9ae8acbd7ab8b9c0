"""``PPOConfig``: the one config of ``p2bot rl`` (PPO or REINFORCE self-play).

Field names follow TRL 1.12's ``PPOConfig`` wherever the meaning is the same (``num_ppo_epochs``,
``num_mini_batches``, ``kl_coef``, ``kl_estimator``, ``cliprange``, ``cliprange_value``, ``vf_coef``, ``gamma``,
``lam``, ``whiten_rewards``, ``response_length``, ``stop_token``, ``missing_eos_penalty``), so a config written
for the removed TRL trainer carries over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.generation.sampling import BACKENDS
from models.infra.tracking import resolve_report_to
from models.scoring.text_metrics import COPY_THRESHOLD
from models.training.lora import check_lora

ALGOS = ("ppo", "reinforce", "rloo", "grpo")
KL_ESTIMATORS = ("k1", "k3")
EPISODE_LAYOUTS = ("turn", "speaker")
ADVANTAGE_ESTIMATORS = ("gae", "episode_gae", "turn_gae")
PARTNERS = ("self", "frozen", "lagged")


@dataclass
class PPOConfig:
    # --- run ---
    output_dir: str = field(default="runs/rl", metadata={"help": "where checkpoints, metrics and samples go"})
    seed: int = field(default=0, metadata={"help": "seed for python, numpy and torch (offset by rank)"})
    max_steps: int = field(default=30, metadata={"help": "number of rollout+update iterations"})
    save_steps: int = field(default=10, metadata={"help": "checkpoint every this many steps (0: only at the end)"})
    save_total_limit: int = field(default=2, metadata={"help": "keep at most this many checkpoints (0: keep all)"})
    prune_keeps_policy: bool = field(default=False, metadata={
        "help": "a checkpoint past save_total_limit keeps its policy/ (a candidate for p2bot select; no longer "
                "resumable) instead of being removed"})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint-<step> directory, or 'latest' for the newest in output_dir"}
    )
    logging_steps: int = field(default=1, metadata={"help": "append metrics to metrics.jsonl every this many steps"})
    sample_log_steps: int = field(default=5, metadata={"help": "write sample dialogues every this many steps (0: never)"})
    num_sample_dialogues: int = field(default=2, metadata={"help": "how many dialogues each sample log shows"})
    report_to: list[str] = field(default_factory=list, metadata={
        "help": "trackers besides metrics.jsonl: none, all, or tensorboard, wandb, trackio, mlflow (any accelerate "
                "tracker); files go under output_dir/tracking"})
    log_level: str = field(default="warning", metadata={"help": "logging level: debug, info, warning, error, critical"})
    disable_tqdm: bool = field(default=False, metadata={"help": "no progress bar"})

    # --- models ---
    model_name_or_path: str = field(default="embedded", metadata={"help": "policy: 'embedded', hub id or local path"})
    ref_model_name_or_path: str | None = field(
        default=None, metadata={"help": "frozen reference for the KL term (default: the policy's start point)"}
    )
    partner_model_name_or_path: str | None = field(
        default=None, metadata={"help": "partner: frozen: the model that speaks as B (default: the policy's start point)"}
    )
    value_model_name_or_path: str | None = field(default=None, metadata={
        "help": "ppo: a separate critic (any causal LM with the policy's tokenizer; may be smaller), trained beside the "
                "policy; default: a value head on the policy's trunk"})
    torch_dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16 or float16 (default: the checkpoint's own dtype; float32 for the embedded models)"})
    bf16: bool = field(default=False, metadata={"help": "mixed precision: the policy's forwards (rollout, experience, "
        "update) under bfloat16 autocast, its weights, gradients and optimizer state in float32 (about 2x faster "
        "matrix products on CPUs with AVX-512 BF16 and on recent GPUs)"})
    use_peft: bool = field(default=False, metadata={"help": "train LoRA adapters; the reference is the adapter-free base"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "module names that get adapters"},
    )

    # --- algorithm ---
    algo: str = field(default="ppo", metadata={
        "help": "ppo (clipped PPO + critic); reinforce (the seed's: one pass, no clipping, mean-of-N baseline); rloo "
                "(leave-one-out baseline, clipped); grpo (group-normalised advantages, clipped, KL to the reference "
                "in the loss)"})
    reinforce_baseline: str = field(default="mean", metadata={"help": "reinforce: mean (the seed's, mean of N incl. "
                                                                       "itself) or loo (leave-one-out)"})
    episode_layout: str = field(default="speaker", metadata={
        "help": "speaker: one sequence per speaker and dialogue (its transcript, own turns trained, one forward for "
                "all of them; a turn whose history was cut starts a new sequence, so the loss equals turn's); turn: "
                "one sequence per turn"})
    advantage_estimator: str = field(default="gae", metadata={
        "help": "ppo: gae (per turn), episode_gae (GAE over the speaker episode, bootstrapped across turns) or "
                "turn_gae (one value per turn, turn-level advantages broadcast to its tokens)"})
    num_ppo_epochs: int = field(default=4, metadata={"help": "passes over each batch of rollouts"})
    num_mini_batches: int = field(default=1, metadata={"help": "optimizer steps per epoch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per mini-batch, weighted by "
        "their trained tokens (the one-pass gradient of token-mean losses); activation memory scales with the micro-batch"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute layer activations in backward "
                                                                          "(less memory, ~30% more compute)"})
    learning_rate: float = field(default=3e-6, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "transformers scheduler name"})
    warmup_steps: int = field(default=0, metadata={"help": "scheduler warm-up (optimizer steps)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: off)"})
    kl_coef: float = field(default=0.05, metadata={"help": "initial (or fixed) per-token KL penalty coefficient"})
    kl_estimator: str = field(default="k1", metadata={"help": "k1 (log-ratio) or k3 (unbiased, non-negative)"})
    adaptive_kl: bool = field(default=False, metadata={"help": "adapt kl_coef towards target_kl (Ziegler et al. 2019)"})
    target_kl: float = field(default=6.0, metadata={"help": "adaptive KL: target KL per response (nats)"})
    kl_horizon: int = field(default=10000, metadata={"help": "adaptive KL: horizon in samples"})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip ε"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip around the old values"})
    vf_coef: float = field(default=0.1, metadata={"help": "value loss weight"})
    entropy_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight (0: entropy only logged)"})
    copy_guard_coef: float = field(default=0.0, metadata={
        "help": "weight of the copy guard (rl.guards.copy_guard): unlikelihood of the tokens that would complete a copy of one of "
                "the speaker's persona sentences, at every position of a trained response one content word short of "
                "one (0: off)"})
    copy_guard_threshold: float = field(default=COPY_THRESHOLD, metadata={
        "help": f"the copy guard's copy rule: the share of a persona sentence's content words (the evaluation's "
                f"{COPY_THRESHOLD})"})
    gamma: float = field(default=1.0, metadata={"help": "discount γ over response tokens"})
    lam: float = field(default=0.95, metadata={"help": "GAE λ"})
    whiten_rewards: bool = field(default=False, metadata={"help": "whiten per-token rewards before GAE"})
    whiten_advantages: bool = field(default=True, metadata={"help": "whiten advantages (per batch)"})
    missing_eos_penalty: float | None = field(
        default=None, metadata={"help": "subtract this from the score of responses that never emit the stop token"}
    )

    # --- self-play ---
    data: str | None = field(default=None, metadata={"help": "dialogue file with personas (default: shipped sample)"})
    data_format: str | None = field(default=None, metadata={"help": "force a reader format (default: inferred)"})
    skip_dialogues: int = field(default=0, metadata={"help": "skip the first N dialogues (e.g. held out for evaluation)"})
    max_dialogues: int = field(default=0, metadata={"help": "use only N dialogues after the skipped ones (0 = all)"})
    pairs_per_step: int = field(default=4, metadata={"help": "persona pairs per rollout batch (per process)"})
    rollouts_per_pair: int = field(default=6, metadata={"help": "dialogues per persona pair (seed: 6)"})
    min_exchanges: int = field(default=1, metadata={"help": "curriculum: A+B exchanges per dialogue at step 0"})
    max_exchanges: int = field(default=3, metadata={"help": "curriculum: exchanges reached at curriculum_steps"})
    curriculum_steps: int = field(default=20, metadata={"help": "steps over which exchanges grow linearly"})
    use_first_utterance: bool = field(default=False, metadata={"help": "open with the data's first line (A), B replies"})
    response_length: int = field(default=32, metadata={"help": "max new tokens per turn"})
    stop_token: str | None = field(default="eos", metadata={"help": "'eos' or None; stop and truncate at EOS"})
    max_history_tokens: int = field(default=256, metadata={"help": "left-truncate the history to this many tokens"})
    temperature: float = field(default=1.0, metadata={"help": "speaker A sampling temperature"})
    top_k: int = field(default=0, metadata={"help": "speaker A top-k (0: off)"})
    top_p: float = field(default=1.0, metadata={"help": "speaker A top-p"})
    partner: str | None = field(default=None, metadata={
        "help": "who speaks as B: self (the policy), frozen (partner_model_name_or_path, default the policy's start "
                "point) or lagged (a copy of the policy synced every partner_sync_steps); default: frozen when "
                "partner_model_name_or_path is set, else self"})
    partner_sync_steps: int = field(default=10, metadata={"help": "lagged partner: copy the policy's weights every N "
                                                                  "steps (only the adapters with LoRA)"})
    partner_do_sample: bool = field(default=True, metadata={"help": "speaker B samples (False: greedy, never trained)"})
    partner_temperature: float = field(default=1.0, metadata={"help": "speaker B temperature"})
    partner_top_k: int = field(default=0, metadata={"help": "speaker B top-k"})
    partner_top_p: float = field(default=1.0, metadata={"help": "speaker B top-p"})
    train_partner_turns: bool = field(
        default=True, metadata={"help": "also train on B's turns when the policy plays B (partner: self)"}
    )
    generation_backend: str = field(default="hf", metadata={
        "help": "hf (dynamic KV cache, reused across a speaker's turns), static (static KV cache; torch.compile on "
                "CUDA) or continuous (transformers' continuous batching: paged KV cache, CUDA graphs on a GPU); the "
                "last two re-encode each prompt (no cross-turn reuse)"})
    reuse_kv_cache: bool = field(default=True, metadata={
        "help": "a speaker's next turn reuses the KV cache of its previous prompt and response (only the new tokens "
                "are encoded); models whose cache is not plain full attention fall back to a full prefill"})

    # --- rewards ---
    reward_funcs: list[str] = field(
        default_factory=lambda: ["persona", "fluency", "coherence", "repetition", "degeneration"],
        metadata={"help": "registry names or package.module:callable"},
    )
    receiver_name_or_path: str = field(
        default="embedded", metadata={"help": "Receiver for the persona/repetition rewards: 'embedded', hub id or path"}
    )
    reward_weights: list[float] | None = field(default=None, metadata={"help": "one weight per reward (default: built-ins')"})

    def __post_init__(self) -> None:
        self.report_to = resolve_report_to(self.report_to)
        check_lora(self)
        if self.algo not in ALGOS:
            raise ValueError(f"algo={self.algo!r}: expected one of {ALGOS}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator={self.kl_estimator!r}: expected one of {KL_ESTIMATORS}")
        if self.skip_dialogues < 0 or self.max_dialogues < 0:
            raise ValueError(f"skip_dialogues={self.skip_dialogues}, max_dialogues={self.max_dialogues}: must be >= 0")
        for name in ("num_ppo_epochs", "num_mini_batches", "gradient_accumulation_steps", "pairs_per_step",
                     "rollouts_per_pair", "min_exchanges", "response_length", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.max_exchanges < self.min_exchanges:
            raise ValueError(f"max_exchanges={self.max_exchanges} is below min_exchanges={self.min_exchanges}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"gamma={self.gamma}, lam={self.lam}: both must lie in [0, 1]")
        if self.cliprange <= 0 or self.cliprange_value <= 0:
            raise ValueError(f"cliprange={self.cliprange}, cliprange_value={self.cliprange_value}: must be positive")
        if self.kl_coef < 0 or self.copy_guard_coef < 0:
            raise ValueError(f"kl_coef={self.kl_coef}, copy_guard_coef={self.copy_guard_coef}: must be non-negative")
        if not 0.0 < self.copy_guard_threshold <= 1.0:
            raise ValueError(f"copy_guard_threshold={self.copy_guard_threshold}: must lie in (0, 1]")
        if self.adaptive_kl and (self.target_kl <= 0 or self.kl_horizon < 1):
            raise ValueError(f"adaptive_kl needs target_kl > 0 and kl_horizon >= 1 (got {self.target_kl}, {self.kl_horizon})")
        for name, allowed in (("generation_backend", BACKENDS), ("episode_layout", EPISODE_LAYOUTS), ("advantage_estimator", ADVANTAGE_ESTIMATORS),
                              ("reinforce_baseline", ("mean", "loo"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected one of {allowed}")
        if self.algo != "ppo" and self.rollouts_per_pair < 2:
            raise ValueError(f"algo={self.algo!r} baselines each rollout with the other rollouts of its persona pair: "
                             "rollouts_per_pair must be >= 2")
        if self.algo == "reinforce" and self.num_ppo_epochs != 1:
            raise ValueError(f"algo='reinforce' (the seed's) makes one pass over each batch: set num_ppo_epochs=1 "
                             f"(got {self.num_ppo_epochs}), or use algo='rloo' for clipped epochs")
        if self.value_model_name_or_path and self.algo != "ppo":
            raise ValueError(f"value_model_name_or_path is a critic; algo={self.algo!r} uses none")
        if self.partner is None:
            self.partner = "frozen" if self.partner_model_name_or_path else "self"
        if self.partner not in PARTNERS:
            raise ValueError(f"partner={self.partner!r}: expected one of {PARTNERS}")
        if self.partner != "frozen" and self.partner_model_name_or_path:
            raise ValueError(f"partner_model_name_or_path is only used by partner='frozen' (got partner={self.partner!r})")
        if self.partner_sync_steps < 1:
            raise ValueError(f"partner_sync_steps={self.partner_sync_steps}: must be at least 1")
        if self.stop_token not in (None, "eos"):
            raise ValueError(f"stop_token={self.stop_token!r}: expected 'eos' or None")
        if self.temperature <= 0 or self.partner_temperature <= 0:
            raise ValueError(f"temperature={self.temperature}, partner_temperature={self.partner_temperature}: must be > 0")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} entries but reward_funcs has {len(self.reward_funcs)}")
        if self.torch_dtype not in (None, "float32", "bfloat16", "float16"):
            raise ValueError(f"torch_dtype={self.torch_dtype!r}: expected float32, bfloat16 or float16")
        # Derived: each turn of each dialogue is one sample; a batch holds this many of them at the curriculum's end.
        self.max_rollouts_per_step = self.pairs_per_step * self.rollouts_per_pair * 2 * self.max_exchanges
        trains_b = self.partner == "self" and self.train_partner_turns and self.partner_do_sample
        speakers = 2 if trains_b else 1
        rows = self.pairs_per_step * self.rollouts_per_pair * speakers  # trained turns per exchange, or speaker episodes
        if rows < self.num_mini_batches * self.gradient_accumulation_steps:
            raise ValueError(
                f"pairs_per_step*rollouts_per_pair*{speakers} (trained speakers: partner={self.partner!r}, "
                f"train_partner_turns={self.train_partner_turns}, partner_do_sample={self.partner_do_sample}) = {rows} "
                f"rows per exchange cannot fill num_mini_batches*gradient_accumulation_steps="
                f"{self.num_mini_batches * self.gradient_accumulation_steps} micro-batches"
            )

    def num_exchanges(self, step: int) -> int:
        """Curriculum: exchanges per dialogue at ``step``, linear from ``min_exchanges`` to ``max_exchanges``."""
        if self.curriculum_steps <= 0 or step >= self.curriculum_steps:
            return self.max_exchanges
        span = self.max_exchanges - self.min_exchanges
        return self.min_exchanges + (span * step) // self.curriculum_steps
