"""Cheap rewards for RL tests (TRL protocol), loadable by path: ``tests/rl/toy_rewards.py:letter_e``."""


def letter_e(prompts, completions, **kwargs):
    """Share of characters that are an 'e': deterministic and dependent on what was sampled."""
    return [c.count("e") / (1 + len(c)) for c in completions]


def letter_e_on_rank1_only(prompts, completions, **kwargs):
    """``letter_e`` on the process of rank 1; None ("not applicable") for every completion elsewhere."""
    import os

    if os.environ.get("RANK", "0") != "1":
        return [None] * len(completions)
    return letter_e(prompts, completions)
