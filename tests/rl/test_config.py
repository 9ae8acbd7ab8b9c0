import pytest

from rl.config import PPOConfig


def test_defaults_are_valid_and_keep_trl_names():
    c = PPOConfig()
    for name in ("num_ppo_epochs", "num_mini_batches", "kl_coef", "kl_estimator", "cliprange", "cliprange_value",
                 "vf_coef", "gamma", "lam", "whiten_rewards", "response_length", "stop_token", "missing_eos_penalty"):
        assert hasattr(c, name)
    assert c.rollouts_per_pair == 6


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"algo": "grpo"}, "algo"),
        ({"kl_estimator": "k2"}, "kl_estimator"),
        ({"num_ppo_epochs": 0}, "num_ppo_epochs"),
        ({"min_exchanges": 3, "max_exchanges": 2}, "max_exchanges"),
        ({"lam": 1.5}, "lam"),
        ({"algo": "reinforce", "rollouts_per_pair": 1}, "rollouts_per_pair"),
        ({"reward_weights": [1.0]}, "reward_weights"),
        ({"pairs_per_step": 1, "rollouts_per_pair": 1, "num_mini_batches": 2, "gradient_accumulation_steps": 2},
         "num_mini_batches"),
    ],
)
def test_invalid_combinations_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**kwargs)


def test_exchange_curriculum():
    c = PPOConfig(min_exchanges=1, max_exchanges=3, curriculum_steps=10)
    assert [c.num_exchanges(s) for s in (0, 4, 5, 9, 10, 50)] == [1, 1, 2, 2, 3, 3]
