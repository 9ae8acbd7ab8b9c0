import math

import pytest
import torch

from rl.losses import entropy_loss, masked_mean, masked_var, masked_whiten, policy_loss, value_loss


def close(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-6, rtol=1e-5)


def test_masked_mean_and_var_ignore_padding():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)
    assert masked_mean(x, m, dim=1).tolist() == pytest.approx([1.5, 3.0])
    # values 1, 2, 3: population var 2/3, unbiased 1
    assert masked_var(x, m).item() == pytest.approx(1.0)
    assert masked_var(x, m, unbiased=False).item() == pytest.approx(2 / 3)


def test_masked_whiten_hand_computed():
    x = torch.tensor([[1.0, 2.0, 3.0, 7.0]])
    m = torch.tensor([[1, 1, 1, 0]])
    w = masked_whiten(x, m, eps=0.0)
    close(w, [[-1.0, 0.0, 1.0, 0.0]])  # mean 2, unbiased std 1, padding zeroed
    w_keep = masked_whiten(x, m, shift_mean=False, eps=0.0)
    close(w_keep, [[1.0, 2.0, 3.0, 0.0]])


def test_policy_loss_clips_hand_computed():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.ones(1, 3)
    loss, stats = policy_loss(new, old, adv, mask, cliprange=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(0.5, 0.8) = 0.8 (clipped); token 3: max(-2.2, -2.2)
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 2.2) / 3)
    assert stats["policy/clipfrac"].item() == pytest.approx(2 / 3)
    expected_kl = (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 6
    assert stats["policy/approx_kl"].item() == pytest.approx(expected_kl, rel=1e-5)


def test_policy_loss_gradient_is_zero_when_clipped():
    new = torch.log(torch.tensor([[1.5]])).requires_grad_()
    loss, _ = policy_loss(new, torch.zeros(1, 1), torch.tensor([[1.0]]), torch.ones(1, 1), cliprange=0.2)
    loss.backward()
    assert new.grad.item() == 0.0
    new2 = torch.zeros(1, 1, requires_grad=True)
    loss2, _ = policy_loss(new2, torch.zeros(1, 1), torch.tensor([[1.0]]), torch.ones(1, 1), cliprange=0.2)
    loss2.backward()
    assert new2.grad.item() == pytest.approx(-1.0)  # d(-A·e^x)/dx at x=0


def test_policy_loss_ignores_masked_tokens():
    new = torch.tensor([[0.0, 50.0]])
    loss, _ = policy_loss(new, torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]]), 0.2)
    assert loss.item() == pytest.approx(-1.0)


def test_value_loss_clipped_hand_computed():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0]])
    loss, stats = value_loss(values, old, returns, torch.ones(1, 2), cliprange_value=0.5)
    # token 1: unclipped (1-2)^2 = 1, clipped (0.5-2)^2 = 2.25 → 2.25; token 2: both 1
    assert loss.item() == pytest.approx(0.5 * (2.25 + 1.0) / 2)
    assert stats["value/clipfrac"].item() == pytest.approx(0.5)


def test_entropy_loss_is_negative_mean_entropy():
    ent = torch.tensor([[1.0, 3.0, 9.0]])
    loss, stats = entropy_loss(ent, torch.tensor([[1, 1, 0]]))
    assert loss.item() == pytest.approx(-2.0)
    assert stats["policy/entropy"].item() == pytest.approx(2.0)
