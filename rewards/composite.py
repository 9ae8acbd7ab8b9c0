"""``Composite``: a weighted sum of rewards that checks and logs every component."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewards.base import RewardError, batch_normalize, reward_source


@dataclass
class Component:
    """One term of the sum: ``weight · normalize(reward(...))`` logged as ``reward/<name>``."""

    name: str
    reward: Any
    weight: float = 1.0
    normalize: str = "none"  # "none" or "batch" (whiten over the batch's samples)

    def __post_init__(self) -> None:
        if self.normalize not in ("none", "batch"):
            raise ValueError(f"component {self.name!r}: normalize={self.normalize!r}, expected 'none' or 'batch'")
        if not math.isfinite(self.weight):
            raise ValueError(f"component {self.name!r}: weight={self.weight} is not finite")


def check_rewards(values: Any, n: int, name: str, reward: Any) -> list[float | None]:
    """``values`` as a list of n floats/None; anything else is a ``RewardError`` naming the reward."""
    where = f"reward {name!r} ({reward_source(reward)})"
    if hasattr(values, "tolist"):  # tensors, arrays
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise RewardError(f"{where} returned a {type(values).__name__}, expected a list of floats")
    if len(values) != n:
        raise RewardError(f"{where} returned {len(values)} values for {n} completions")
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        try:
            v = float(v)
        except (TypeError, ValueError) as err:
            raise RewardError(f"{where} returned a non-numeric value at index {i}: {v!r}") from err
        if not math.isfinite(v):
            raise RewardError(f"{where} returned a non-finite value ({v}) at index {i}")
        out.append(v)
    return out


class Composite:
    """Weighted sum of reward components, itself a reward (TRL protocol).

    total_i = Σ_c w_c · norm_c(r_c,i) over the components whose value for sample i is not None (None means
    "not applicable"); a sample where every component is None gets None. ``norm_c`` is the identity or a
    per-batch whitening. After each call ``last_components`` holds the raw (unweighted, unnormalised) values
    per component name, and when the caller passes TRL's ``log_metric`` kwarg, each component's batch mean is
    logged as ``reward/<name>``.

    Args:
        components: the ``Component`` terms.
        pool: the ``ScorerPool`` they share (``setup`` forwards to it once).
    """

    __name__ = "composite"

    def __init__(self, components: Sequence[Component], pool: Any = None):
        if not components:
            raise ValueError("a Composite needs at least one component")
        names = [c.name for c in components]
        for i, c in enumerate(components):  # two rewards of one name (e.g. persona twice): number them
            if names.count(c.name) > 1:
                c.name = f"{c.name}_{names[:i + 1].count(c.name)}"
        self.terms = list(components)
        self.pool = pool
        self.last_components: dict[str, list[float | None]] = {}

    @property
    def weights(self) -> dict[str, float]:
        return {c.name: c.weight for c in self.terms}

    @property
    def needs_dialogue(self) -> bool:
        return any(getattr(c.reward, "needs_dialogue", False) for c in self.terms)

    def setup(self, accelerator: Any) -> None:
        if self.pool is not None:
            self.pool.setup(accelerator)
        for c in self.terms:
            if hasattr(c.reward, "setup") and getattr(c.reward, "pool", None) is not self.pool:
                c.reward.setup(accelerator)

    def components(self, prompts: list, completions: list, **kwargs: Any) -> dict[str, list[float | None]]:
        """Raw values of every component, checked (length, numbers, finiteness)."""
        out = {}
        profiler = getattr(self, "profiler", None)
        for c in self.terms:
            try:
                with profiler.phase(f"reward/{c.name}") if profiler is not None else contextlib.nullcontext():
                    values = c.reward(prompts=prompts, completions=completions, **kwargs)
            except RewardError:
                raise
            except Exception as err:
                if hasattr(err, "add_note"):  # Python 3.11+
                    err.add_note(f"while computing reward {c.name!r} ({reward_source(c.reward)})")
                raise
            out[c.name] = check_rewards(values, len(completions), c.name, c.reward)
        return out

    def combine(self, components: dict[str, list[float | None]]) -> list[float | None]:
        """Weighted total per sample from raw component values."""
        n = len(next(iter(components.values())))
        totals: list[float | None] = [None] * n
        for c in self.terms:
            values = batch_normalize(components[c.name]) if c.normalize == "batch" else components[c.name]
            for i, v in enumerate(values):
                if v is not None:
                    totals[i] = (totals[i] or 0.0) + c.weight * v
        return totals

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        components = self.components(prompts, completions, **kwargs)
        self.last_components = components
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            for name, values in components.items():
                present = [v for v in values if v is not None]
                if present:
                    log_metric(f"reward/{name}", sum(present) / len(present))
        return self.combine(components)
