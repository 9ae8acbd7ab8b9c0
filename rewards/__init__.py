"""Rewards for persona dialogue RL, in TRL's reward-function protocol ``f(prompts, completions, **kw)``."""

from rewards.base import Reward, RewardError, RewardFunc, as_text, as_texts, batch_normalize, reward_name
from rewards.coherence import CoherenceReward
from rewards.composite import Component, Composite, check_rewards
from rewards.copying import copy_penalty, echo_penalty, self_repeat_penalty
from rewards.degeneration import degeneration, repeated_ngram_fraction
from rewards.fluency import FluencyReward
from rewards.persona import PersonaReward, discounted_future
from rewards.pool import ScorerPool
from rewards.registry import (
    RewardSpec,
    build_composite,
    build_reward,
    parse_reward_specs,
    register_reward,
    registered_rewards,
    resolve_callable,
)
from rewards.repetition import RepetitionReward

__all__ = [
    "CoherenceReward", "Component", "Composite", "FluencyReward", "PersonaReward", "RepetitionReward", "Reward",
    "RewardError", "RewardFunc", "RewardSpec", "ScorerPool", "as_text", "as_texts", "batch_normalize",
    "build_composite", "build_reward", "check_rewards", "copy_penalty", "degeneration", "echo_penalty", "self_repeat_penalty", "discounted_future", "parse_reward_specs",
    "register_reward", "registered_rewards", "repeated_ngram_fraction", "reward_name", "resolve_callable",
]
