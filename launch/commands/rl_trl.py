"""``p2bot rl-trl``: persona self-play trained by TRL's ``GRPOTrainer``, with p2bot's rollout and rewards.

Options: ``SelfPlayTRLConfig`` (data, model, partner, exchanges, rewards) plus every TRL ``GRPOConfig`` field
(``--output_dir``, ``--learning_rate``, ``--max_steps``, ``--num_generations``, ``--per_device_train_batch_size``,
``--beta``, ``--loss_type``, ``--temperature``, ``--report_to``, ...), from ``--config file.yaml`` and/or the command
line. Each dataset row is a persona pair; ``rl.trl_selfplay.SelfPlayRollout`` plays ``num_generations`` dialogues per
pair and hands TRL speaker A's side of each (the partner's tokens carry no loss); every reward is scored per turn as
in ``p2bot rl`` and averaged over A's turns. ``--reward_weights`` (TRL's) overrides the rewards' own weights. Runs
under ``accelerate launch``; with ``--use_vllm true`` (a GPU and ``pip install vllm``) speaker A generates with TRL's
vLLM engine (``--vllm_mode colocate`` or ``server``). Writes TRL's checkpoints and the final model (LM and tokenizer)
to ``output_dir``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field

from trl import GRPOConfig

from data_prep import build_selfplay_pairs
from launch.commands.rl import freeze, load_transmitter
from launch.commands.sft import load_dialogues
from launch.config_io import parse_configs, save_resolved_config
from launch.errors import option, require_inputs
from models.training.lora import check_lora, lora_config

PARTNERS = ("self", "frozen", "lagged")


@dataclass
class SelfPlayTRLConfig:
    """p2bot's self-play and reward options of ``p2bot rl-trl`` (TRL's own are ``GRPOConfig``'s)."""

    data: str | None = field(default=None, metadata={"help": "dialogue file with personas (default: shipped sample)"})
    data_format: str | None = field(default=None, metadata={"help": "force a reader format (default: inferred)"})
    skip_dialogues: int = field(default=0, metadata={"help": "skip the first N dialogues (e.g. held out for evaluation)"})
    max_dialogues: int = field(default=0, metadata={"help": "use only N dialogues after the skipped ones (0 = all)"})
    model_name_or_path: str = field(default="embedded", metadata={"help": "policy: 'embedded', hub id or local path"})
    partner: str = field(default="self", metadata={
        "help": "who speaks as B: self (the policy; B's turns are context, not trained), frozen "
                "(partner_model_name_or_path, default the policy's start point) or lagged (a copy of the policy synced "
                "every partner_sync_steps)"})
    partner_model_name_or_path: str | None = field(default=None, metadata={"help": "partner: frozen: the model that "
                                                                                   "speaks as B"})
    partner_sync_steps: int = field(default=10, metadata={"help": "lagged partner: copy the policy's weights every N "
                                                                  "steps"})
    partner_do_sample: bool = field(default=True, metadata={"help": "speaker B samples (False: greedy)"})
    partner_temperature: float = field(default=1.0, metadata={"help": "speaker B temperature"})
    partner_top_k: int = field(default=0, metadata={"help": "speaker B top-k (0: off)"})
    partner_top_p: float = field(default=1.0, metadata={"help": "speaker B top-p"})
    exchanges: int = field(default=2, metadata={"help": "A+B exchanges per dialogue"})
    response_length: int = field(default=32, metadata={"help": "max new tokens per turn (TRL's max_completion_length "
                                                               "is not used)"})
    max_history_tokens: int = field(default=1024, metadata={
        "help": "left-truncate the history to this many tokens; a dialogue stops where the cut would change what A "
                "has already seen"})
    use_first_utterance: bool = field(default=False, metadata={"help": "open with the data's first line (A), B replies"})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["persona", "fluency", "coherence", "repetition", "degeneration"],
        metadata={"help": "registry names or package.module:callable (p2bot's rewards)"},
    )
    receiver_name_or_path: str = field(
        default="embedded", metadata={"help": "Receiver for the persona/repetition rewards: 'embedded', hub id or path"}
    )
    use_peft: bool = field(default=False, metadata={"help": "train LoRA adapters (TRL's peft_config); TRL's reference "
                                                            "is the adapter-free base"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "module names that get adapters"})

    def __post_init__(self) -> None:
        if self.use_peft and self.partner == "lagged":
            raise ValueError("partner='lagged' copies the policy's trainable weights, which under use_peft are "
                             "adapters the partner lacks: use partner self or frozen with use_peft")
        check_lora(self)
        if self.partner not in PARTNERS:
            raise ValueError(f"partner={self.partner!r}: expected one of {', '.join(PARTNERS)}")
        if self.partner_model_name_or_path and self.partner != "frozen":
            raise ValueError(f"partner_model_name_or_path is set but partner={self.partner!r}: use partner: frozen")
        for name in ("exchanges", "response_length", "max_history_tokens", "partner_sync_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.partner_temperature <= 0:
            raise ValueError(f"partner_temperature={self.partner_temperature}: must be > 0")


CONFIG_TYPES = (SelfPlayTRLConfig, GRPOConfig)  # what main parses; the docs build its parser from this


def build_trainer(cfg: SelfPlayTRLConfig, args: GRPOConfig):
    """The ``GRPOTrainer`` with the self-play rollout and p2bot's rewards (``args.reward_weights`` filled in)."""
    from trl import GRPOTrainer

    from models.prompting.prompt import PromptFormatter
    from rewards import ScorerPool
    from rl.partner import LaggedPartner
    from rl.selfplay import Sampling
    from rl.trl_selfplay import SelfPlayRollout, selfplay_dataset, trl_reward_funcs

    with option("--data"):
        dialogues = load_dialogues(cfg.data or "", cfg.data_format, cfg.skip_dialogues, cfg.max_dialogues)
        pairs = list(build_selfplay_pairs(dialogues, with_first_utterance=cfg.use_first_utterance, seed=args.seed))
        if not pairs:
            raise ValueError(f"{cfg.data or 'sample data'}: no dialogue with both personas in the selected range")
    policy = load_transmitter(cfg.model_name_or_path)
    formatter = PromptFormatter(policy.tokenizer, max_history_tokens=cfg.max_history_tokens)
    partner = None
    if cfg.partner == "frozen":
        partner = freeze(load_transmitter(cfg.partner_model_name_or_path or cfg.model_name_or_path,
                                          flag="--partner_model_name_or_path"))
    elif cfg.partner == "lagged":
        partner = LaggedPartner(copy.deepcopy(policy.lm), cfg.partner_sync_steps)
    pool = ScorerPool(policy=cfg.model_name_or_path, receiver=cfg.receiver_name_or_path,
                      max_history_tokens=cfg.max_history_tokens)
    with option("--reward_funcs"):
        funcs, weights = trl_reward_funcs(cfg.reward_funcs, args.reward_weights, pool=pool)
    args.reward_weights = weights
    rollout = SelfPlayRollout(
        pairs, formatter, exchanges=cfg.exchanges, partner=partner, response_length=cfg.response_length,
        partner_sampling=Sampling(cfg.partner_do_sample, cfg.partner_temperature, cfg.partner_top_k, cfg.partner_top_p),
        use_first_utterance=cfg.use_first_utterance)
    trainer = GRPOTrainer(model=policy.lm, reward_funcs=funcs, args=args, train_dataset=selfplay_dataset(pairs),
                          processing_class=policy.tokenizer, rollout_func=rollout, peft_config=lora_config(cfg))
    device = trainer.accelerator.device
    if cfg.partner == "frozen":
        partner.to(device)
    elif cfg.partner == "lagged":
        partner.model.to(device)
    for f in funcs:
        f.setup(trainer.accelerator)
    return trainer


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL: we know
    cfg, args = parse_configs(CONFIG_TYPES, argv, prog="p2bot rl-trl", description=__doc__)
    if args.use_vllm:
        from trl.import_utils import is_vllm_available

        if not is_vllm_available():
            raise SystemExit("p2bot rl-trl: error: --use_vllm true needs vLLM (pip install vllm, on a machine with a "
                             "GPU); without it, leave use_vllm false and the policy generates itself")
    require_inputs(data={"--data": cfg.data},
                   models={"--model_name_or_path": cfg.model_name_or_path,
                           "--partner_model_name_or_path": cfg.partner_model_name_or_path},
                   receivers={"--receiver_name_or_path": cfg.receiver_name_or_path})
    trainer = build_trainer(cfg, args)
    if trainer.is_world_process_zero():
        save_resolved_config(args.output_dir, cfg, args)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    rollout = trainer.rollout_func
    trainer.accelerator.print(f"[p2bot rl-trl] done: step {trainer.state.global_step}; {rollout.chain_breaks} "
                              f"dialogues stopped early (see max_history_tokens); model in {args.output_dir}")
    return 0
