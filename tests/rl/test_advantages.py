import pytest
import torch

from rl.advantages import gae, group_baseline_advantages, kl_penalty, token_rewards, whiten


def close(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-6, rtol=1e-5)


def test_gae_hand_computed_with_padding():
    rewards = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 9.0], [1.0, 9.0, 9.0]])  # padded values must be ignored
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # row 0: δ1 = 1 - 0.2 = 0.8, A1 = 0.8; δ0 = 0 + 0.9*0.2 - 0.5 = -0.32, A0 = -0.32 + 0.45*0.8 = 0.04
    # row 1: δ0 = 2 - 1 = 1, A0 = 1
    close(adv, [[0.04, 0.8, 0.0], [1.0, 0.0, 0.0]])
    close(ret, [[0.54, 1.0, 0.0], [2.0, 0.0, 0.0]])


def test_gae_lambda_one_gamma_one_is_monte_carlo():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.3, -0.7, 5.0]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    close(ret, [[6.0, 5.0, 3.0]])
    close(adv, [[5.7, 5.7, -2.0]])


def test_token_rewards_score_on_last_token():
    scores = torch.tensor([1.0, -2.0, 5.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    r = token_rewards(scores, kl, mask, kl_coef=0.5)
    close(r, [[-0.05, -0.1, 0.85], [-2.5, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_kl_estimators():
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(0.693147, rel=1e-5)
    # ρ = 0.5: (0.5 - 1) - log 0.5 = 0.193147
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(0.193147, rel=1e-5)
    with pytest.raises(ValueError, match="k2"):
        kl_penalty(logp, ref, "k2")


def test_whiten_advantages():
    x = torch.tensor([[2.0, 4.0], [6.0, 0.0]])
    w = whiten(x, torch.tensor([[1, 1], [1, 0]]))
    close(w, [[-1.0, 0.0], [1.0, 0.0]])


def test_group_baseline_is_mean_of_group():
    returns = torch.tensor([1.0, 3.0, 10.0, 4.0, 7.0])
    adv = group_baseline_advantages(returns, ["a", "a", "b", "c", "c"])
    assert adv.tolist() == pytest.approx([-1.0, 1.0, 0.0, -1.5, 1.5])
