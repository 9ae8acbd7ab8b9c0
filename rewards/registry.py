"""Rewards by name: a registry for built-ins, ``module:callable`` / ``file.py:callable`` for users' own.

A reward spec is a string or a mapping::

    persona                                         # registry name, its default weight
    my_pkg.rewards:keyword_reward                   # an importable module and a callable in it
    path/to/length_reward.py:LengthReward           # a Python file (relative to the working directory)
    {name: persona, weight: 0.5, normalize: batch, args: {mutual: true, gamma: 0.5}, log_name: persona_mutual}

What a spec resolves to is turned into a reward the same way for every source: a class is instantiated with
``args`` (plus ``pool=`` when its ``__init__`` takes a ``pool`` argument); a function or other callable is the
reward itself (``args`` bound with ``functools.partial``). Weights: ``reward_weights[i]`` when given, else the
spec's ``weight``, else the registered default, else 1.0.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewards.base import USER_MODULE_PREFIX, RewardError, reward_name

NORMALIZE = ("none", "batch")
BUILTIN_MODULES = ("rewards.fluency", "rewards.coherence", "rewards.persona", "rewards.repetition", "rewards.degeneration",
                   "rewards.copying")


@dataclass
class _Entry:
    target: Any
    weight: float | None


_REGISTRY: dict[str, _Entry] = {}


def register_reward(name: str, *, weight: float | None = None) -> Callable:
    """Decorator: make a reward class or function available by ``name`` (``weight`` = its default weight)."""

    def deco(target):
        if name in _REGISTRY and _REGISTRY[name].target is not target:
            raise ValueError(f"reward name {name!r} is already registered to {_REGISTRY[name].target!r}")
        _REGISTRY[name] = _Entry(target, weight)
        return target

    return deco


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def registered_rewards() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _import_file(path: Path):
    if not path.is_file():
        raise RewardError(f"reward file {path} does not exist")
    module_name = f"{USER_MODULE_PREFIX}{path.stem}_{abs(hash(str(path.resolve())))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise RewardError(f"reward file {path} failed to import: {type(err).__name__}: {err}") from err
    return module


def resolve_callable(ref: str) -> Any:
    """The object named by ``"package.module:attr"`` or ``"path/file.py:attr"`` (``attr`` may be dotted)."""
    if ":" not in ref:
        raise RewardError(f"{ref!r} is neither a registered reward nor of the form 'package.module:callable'")
    where, attr = ref.rsplit(":", 1)
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except Exception as err:
            raise RewardError(f"reward module {where!r} failed to import: {type(err).__name__}: {err}") from err
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RewardError(f"reward module {where!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


@dataclass
class RewardSpec:
    """One entry of a reward list (see the module docstring)."""

    name: str
    weight: float | None = None
    normalize: str = "none"
    args: dict[str, Any] = field(default_factory=dict)
    log_name: str | None = None

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE:
            raise ValueError(f"reward {self.name!r}: normalize={self.normalize!r}, expected one of {NORMALIZE}")
        if not isinstance(self.args, Mapping):
            raise ValueError(f"reward {self.name!r}: args must be a mapping, got {type(self.args).__name__}")


def parse_reward_specs(specs: Any, weights: Sequence[float] | None = None) -> list[RewardSpec]:
    """Normalise a reward list: strings, mappings or ``RewardSpec``s (also ``{"rewards": [...]}``).

    ``weights`` (e.g. ``reward_weights`` of a config) overrides per-spec weights; giving both for one
    reward with different values is an error.
    """
    if isinstance(specs, Mapping) and "rewards" in specs:
        specs = specs["rewards"]
    if isinstance(specs, (str, Mapping, RewardSpec)):
        specs = [specs]
    out = []
    for i, item in enumerate(specs):
        if isinstance(item, RewardSpec):
            spec = item
        elif isinstance(item, str):
            spec = RewardSpec(item)
        elif isinstance(item, Mapping):
            unknown = set(item) - {"name", "weight", "normalize", "args", "log_name"}
            if "name" not in item or unknown:
                raise ValueError(f"reward_funcs[{i}]: needs a 'name'; unknown keys {sorted(unknown)}")
            spec = RewardSpec(**{k: (dict(v) if k == "args" and v is not None else v) for k, v in item.items()
                                 if v is not None})
        else:
            raise ValueError(f"reward_funcs[{i}]: expected a name or a mapping, got {type(item).__name__}")
        out.append(spec)
    if weights is not None:
        if len(weights) != len(out):
            raise ValueError(f"reward_weights has {len(weights)} entries but reward_funcs has {len(out)}")
        for spec, w in zip(out, weights):
            if spec.weight is not None and float(spec.weight) != float(w):
                raise ValueError(f"reward {spec.name!r}: weight {spec.weight} in reward_funcs but {w} in reward_weights")
            spec.weight = float(w)
    return out


def _instantiate(target: Any, args: dict[str, Any], pool: Any, source: str) -> Any:
    if inspect.isclass(target):
        kwargs = dict(args)
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            params = {}
        if "pool" in params and "pool" not in kwargs:
            kwargs["pool"] = pool
        try:
            return target(**kwargs)
        except TypeError as err:
            raise RewardError(f"reward {source}: cannot build it with args {sorted(args)}: {err}") from err
    if not callable(target):
        raise RewardError(f"reward {source} is a {type(target).__name__}, not a callable")
    if args:
        bound = functools.partial(target, **args)
        functools.update_wrapper(bound, target)
        return bound
    return target


def build_reward(spec: RewardSpec | str | Mapping, pool: Any = None) -> tuple[Any, float]:
    """The reward callable for one spec and its weight."""
    spec = parse_reward_specs([spec])[0]
    _load_builtins()
    if spec.name in _REGISTRY:
        entry = _REGISTRY[spec.name]
        reward = _instantiate(entry.target, spec.args, pool, f"{spec.name!r}")
        default = entry.weight
    else:
        reward = _instantiate(resolve_callable(spec.name), spec.args, pool, f"{spec.name!r}")
        default = None
    if not callable(reward):
        raise RewardError(f"reward {spec.name!r} built a {type(reward).__name__}, which is not callable")
    weight = spec.weight if spec.weight is not None else (default if default is not None else 1.0)
    return reward, float(weight)


def build_composite(specs: Any, weights: Sequence[float] | None = None, *, pool: Any = None):
    """A ``Composite`` over ``specs`` (as accepted by ``parse_reward_specs``), sharing one ``ScorerPool``."""
    from rewards.composite import Component, Composite

    if pool is None:
        from rewards.pool import ScorerPool

        pool = ScorerPool()
    components = []
    for spec in parse_reward_specs(specs, weights):
        reward, weight = build_reward(spec, pool)
        default_name = spec.name if spec.name in _REGISTRY else reward_name(reward)  # a built-in logs under its name
        components.append(Component(spec.log_name or default_name, reward, weight, spec.normalize))
    return Composite(components, pool=pool)
