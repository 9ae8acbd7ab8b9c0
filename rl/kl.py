"""KL-penalty coefficient controllers: fixed, or adaptive towards a target KL (Ziegler et al. 2019, §2.2)."""

from __future__ import annotations


class FixedKLController:
    """Keeps β constant."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """β ← β·(1 + clip(KL/KL_target - 1, -0.2, 0.2)·n/horizon) after each batch of n samples."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        super().__init__(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon


def build_kl_controller(kl_coef: float, adaptive: bool = False, target: float = 6.0, horizon: int = 10000):
    """The controller named by a config: adaptive if ``adaptive`` else fixed."""
    return AdaptiveKLController(kl_coef, target, horizon) if adaptive else FixedKLController(kl_coef)
