"""RL for persona dialogue: self-play environment, PPO/REINFORCE trainer, checkpoints (see DESIGN.md §5); guards
(``rl.guards``) and the self-play evaluation (``rl.evaluation``) in subpackages."""

from data_prep.moved import install as _install_moved
from rl.advantages import gae, group_baseline_advantages, kl_penalty, token_rewards, whiten
from rl.checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint
from rl.config import PPOConfig
from rl.experience import Experience, Rollout, collate
from rl.kl import AdaptiveKLController, FixedKLController, build_kl_controller
from rl.loop import train
from rl.selfplay import Dialogue, Sampling, SelfPlayBatch, SelfPlayEnv
from rl.trainer import PPOTrainer, build_accelerator

__all__ = [
    "AdaptiveKLController", "Dialogue", "Experience", "FixedKLController", "PPOConfig", "PPOTrainer", "Rollout",
    "Sampling", "SelfPlayBatch", "SelfPlayEnv", "build_accelerator", "build_kl_controller", "collate", "gae",
    "group_baseline_advantages", "kl_penalty", "list_checkpoints", "load_checkpoint", "resolve_checkpoint",
    "save_checkpoint", "token_rewards", "train", "whiten",
]

_install_moved()
