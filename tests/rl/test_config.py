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
        ({"algo": "a2c"}, "algo"),
        ({"algo": "reinforce"}, "num_ppo_epochs"),  # one pass: num_ppo_epochs=1 must be said
        ({"algo": "grpo", "value_model_name_or_path": "x"}, "value_model_name_or_path"),
        ({"episode_layout": "dialogue"}, "episode_layout"),
        ({"advantage_estimator": "vtrace"}, "advantage_estimator"),
        ({"partner": "other"}, "partner"),
        ({"partner": "lagged", "partner_model_name_or_path": "x"}, "partner_model_name_or_path"),
        ({"partner": "lagged", "partner_sync_steps": 0}, "partner_sync_steps"),
        # A alone is trained (frozen partner, B not trained, or greedy B): 2 rows cannot fill 4 micro-batches
        ({"pairs_per_step": 1, "rollouts_per_pair": 2, "num_mini_batches": 4, "partner": "frozen"}, "num_mini_batches"),
        ({"pairs_per_step": 1, "rollouts_per_pair": 2, "num_mini_batches": 4, "train_partner_turns": False},
         "train_partner_turns=False"),
        ({"pairs_per_step": 1, "rollouts_per_pair": 2, "num_mini_batches": 4, "partner_do_sample": False},
         "partner_do_sample=False"),
        ({"kl_estimator": "k2"}, "kl_estimator"),
        ({"num_ppo_epochs": 0}, "num_ppo_epochs"),
        ({"min_exchanges": 3, "max_exchanges": 2}, "max_exchanges"),
        ({"lam": 1.5}, "lam"),
        ({"algo": "reinforce", "rollouts_per_pair": 1, "num_ppo_epochs": 1}, "rollouts_per_pair"),
        ({"algo": "rloo", "rollouts_per_pair": 1}, "rollouts_per_pair"),
        ({"reward_weights": [1.0]}, "reward_weights"),
        ({"pairs_per_step": 1, "rollouts_per_pair": 1, "num_mini_batches": 2, "gradient_accumulation_steps": 2},
         "num_mini_batches"),
    ],
)
def test_invalid_combinations_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**kwargs)


def test_partner_defaults_follow_the_partner_model():
    assert PPOConfig().partner == "self"
    assert PPOConfig(partner_model_name_or_path="some/model").partner == "frozen"
    # the same batch fills 4 micro-batches when B's turns are trained too
    assert PPOConfig(pairs_per_step=1, rollouts_per_pair=2, num_mini_batches=4).partner == "self"


def test_exchange_curriculum():
    c = PPOConfig(min_exchanges=1, max_exchanges=3, curriculum_steps=10)
    assert [c.num_exchanges(s) for s in (0, 4, 5, 9, 10, 50)] == [1, 1, 2, 2, 3, 3]
