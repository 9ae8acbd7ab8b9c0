"""Cheap rewards for RL tests (TRL protocol), loadable by path: ``tests/rl/toy_rewards.py:letter_e``."""


def letter_e(prompts, completions, **kwargs):
    """Share of characters that are an 'e': deterministic and dependent on what was sampled."""
    return [c.count("e") / (1 + len(c)) for c in completions]
