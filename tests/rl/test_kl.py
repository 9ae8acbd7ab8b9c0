import pytest

from rl.kl import AdaptiveKLController, FixedKLController, build_kl_controller


def test_fixed_controller_never_moves():
    c = FixedKLController(0.1)
    c.update(100.0, 64)
    assert c.value == 0.1


def test_adaptive_controller_hand_computed_and_clipped():
    c = AdaptiveKLController(0.1, target=2.0, horizon=100)
    c.update(2.2, 10)  # error 0.1 → ×1.01
    assert c.value == pytest.approx(0.101)
    c.update(100.0, 10)  # error clipped to 0.2 → ×1.02
    assert c.value == pytest.approx(0.101 * 1.02)
    c.update(0.0, 50)  # error -1 clipped to -0.2 → ×0.9
    assert c.value == pytest.approx(0.101 * 1.02 * 0.9)


def test_state_dict_roundtrip():
    c = build_kl_controller(0.2, adaptive=True, target=1.0, horizon=10)
    c.update(5.0, 5)
    d = build_kl_controller(0.2, adaptive=True, target=1.0, horizon=10)
    d.load_state_dict(c.state_dict())
    assert d.value == c.value != 0.2
