import pytest
import torch

from rl.advantages import (
    gae,
    group_advantages,
    group_baseline_advantages,
    kl_penalty,
    token_rewards,
    turn_ends,
    turn_gae,
    turn_starts,
    whiten,
)


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


def test_token_rewards_place_each_turn_score_on_its_last_token():
    # one row, two turns (tokens 0-1 and 2-4), padding at 5
    turn_ids = torch.tensor([[0, 0, 1, 1, 1, -1]])
    mask = torch.tensor([[1.0, 1, 1, 1, 1, 0]])
    r = token_rewards(torch.tensor([[2.0, -1.0]]), torch.full((1, 6), 0.2), mask, 0.5, turn_ids)
    close(r, [[-0.1, 1.9, -0.1, -0.1, -1.1, 0.0]])
    assert turn_ends(turn_ids, mask).tolist() == [[False, True, False, False, True, False]]
    assert turn_starts(turn_ids, mask).tolist() == [[True, False, True, False, False, False]]


def test_gae_dones_cut_bootstrapping_between_turns():
    rewards = torch.tensor([[0.0, 1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 0.1]])
    mask, dones = torch.ones(1, 4), torch.tensor([[False, True, False, True]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5, dones=dones)
    # turn 2 (t=2,3): δ3 = 2 - 0.1 = 1.9; δ2 = 0 + 0.9*0.1 - 0.4 = -0.31, A2 = -0.31 + 0.45*1.9 = 0.545
    # turn 1 (t=0,1) ends at t=1, no bootstrap from t=2: δ1 = 1 - 0.2 = 0.8; A0 = -0.32 + 0.45*0.8 = 0.04
    close(adv, [[0.04, 0.8, 0.545, 1.9]])
    close(ret, [[0.54, 1.0, 0.945, 2.0]])
    # without dones the value of t=2 is bootstrapped into t=1: δ1 = 1 + 0.9*0.4 - 0.2 = 1.16, A1 = 1.16 + 0.45*0.545
    adv_ep, _ = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert adv_ep[0, 1].item() == pytest.approx(1.16 + 0.45 * 0.545, rel=1e-5)
    assert adv_ep[0, 2].item() == pytest.approx(0.545, rel=1e-5)  # the last turn is the same either way


def test_turn_gae_hand_computed():
    # two turns: tokens 0-1 (turn 0), 2-3 (turn 1); values read at turn starts: V0 = 0.5, V1 = 0.4
    rewards = torch.tensor([[0.1, 1.0, -0.2, 2.0]])
    values = torch.tensor([[0.5, 9.0, 0.4, 9.0]])  # values inside a turn are not turn states: ignored
    turn_ids = torch.tensor([[0, 0, 1, 1]])
    adv, ret, vmask = turn_gae(rewards, values, torch.ones(1, 4), turn_ids, gamma=0.9, lam=0.5)
    # R0 = 1.1, R1 = 1.8; δ1 = 1.8 - 0.4 = 1.4 = A1; δ0 = 1.1 + 0.9*0.4 - 0.5 = 0.96, A0 = 0.96 + 0.45*1.4 = 1.59
    close(adv, [[1.59, 1.59, 1.4, 1.4]])
    close(ret, [[2.09, 0.0, 1.8, 0.0]])  # returns only where the value is trained: the turn starts
    close(vmask, [[1.0, 0.0, 1.0, 0.0]])


def test_group_advantages_mean_loo_and_normalised():
    returns = torch.tensor([1.0, 3.0, 8.0, 10.0, 4.0])
    groups = ["a", "a", "a", "b", "c"]
    # mean of a = 4: -3, -1, 4; b and c are groups of one: 0
    assert group_advantages(returns, groups, "mean").tolist() == pytest.approx([-3.0, -1.0, 4.0, 0.0, 0.0])
    # leave-one-out: 1 - (3+8)/2 = -4.5; 3 - (1+8)/2 = -1.5; 8 - (1+3)/2 = 6
    assert group_advantages(returns, groups, "loo").tolist() == pytest.approx([-4.5, -1.5, 6.0, 0.0, 0.0])
    std = (((1 - 4) ** 2 + (3 - 4) ** 2 + (8 - 4) ** 2) / 3) ** 0.5  # population std of group a
    expected = [(1 - 4) / std, (3 - 4) / std, (8 - 4) / std, 0.0, 0.0]
    assert group_advantages(returns, groups, "normalized").tolist() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="baseline"):
        group_advantages(returns, groups, "median")
