"""The reward protocol and the helpers every reward shares.

A reward is any callable ``f(prompts, completions, **kwargs) -> list[float]`` (TRL's reward-function protocol),
one value per completion; ``None`` marks "not applicable to this sample" as in TRL. Self-play passes the
context as kwargs aligned with ``completions``: ``persona``, ``partner_persona``, ``history``, ``turn``,
``speaker``, ``dialogue_id``; ``trl.GRPOTrainer`` passes the dataset's columns plus ``completion_ids``,
``trainer_state``, ``log_metric`` and ``log_extra``. A reward may also have:

- ``__name__``: the name it is logged under (``reward/<name>``);
- ``needs_dialogue``: True when a sample's value depends on other turns of the same dialogue in the batch
  (turn-level credit), so callers must score whole dialogues at once;
- ``setup(accelerator)``: called once before training to move frozen scorers to the right device.

Reward classes must not subclass ``torch.nn.Module``: TRL treats any module as a sequence-classification model.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

USER_MODULE_PREFIX = "p2bot_user_reward_"  # modules loaded from a reward file path (``file.py:callable``)


class RewardError(ValueError):
    """A reward returned something unusable, or could not be built; the message names the reward."""


@runtime_checkable
class RewardFunc(Protocol):
    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]: ...


class Reward:
    """Optional base class for reward objects: a name, the dialogue flag and a no-op ``setup``."""

    name: str = "reward"
    needs_dialogue: bool = False

    @property
    def __name__(self) -> str:  # what TRL and ``Composite`` log the reward under
        return self.name

    def setup(self, accelerator: Any) -> None:
        """Move frozen scorers to ``accelerator.device``; the default does nothing."""

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        raise NotImplementedError


class ReceiverReward(Reward):
    """Base of rewards scored by the shared Receiver: taken from ``pool`` on first use, moved by ``setup``."""

    _receiver: Any = None
    pool: Any = None

    @property
    def receiver(self):
        if self._receiver is None:
            self._receiver = self.pool.receiver()
        return self._receiver

    def setup(self, accelerator: Any) -> None:
        if self.pool is not None:
            self.pool.setup(accelerator)


def reward_name(func: Any) -> str:
    """Display name of a reward: its ``__name__`` (functions, ``Reward`` objects) or its class name."""
    while hasattr(func, "func") and hasattr(func, "keywords"):  # functools.partial
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def reward_source(func: Any) -> str:
    """``module:qualname`` of a reward (of its class for callable objects), for error messages."""
    while hasattr(func, "func") and hasattr(func, "keywords"):
        func = func.func
    target = func if hasattr(func, "__qualname__") else type(func)
    module = getattr(target, "__module__", None) or "?"
    if module.startswith(USER_MODULE_PREFIX):  # name the user's file, not the synthetic module
        module = getattr(sys.modules.get(module), "__file__", module)
    return f"{module}:{getattr(target, '__qualname__', type(func).__name__)}"


def needs_dialogue(func: Any) -> bool:
    return bool(getattr(func, "needs_dialogue", False))


def _message_text(message: Any) -> str:
    content = message.get("content", "") if isinstance(message, dict) else message
    if isinstance(content, list):  # multimodal-style content parts
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return "" if content is None else str(content)


def as_text(item: Any) -> str:
    """A completion or prompt as plain text: strings as they are; chat messages (a list of ``{"role",
    "content"}`` dicts, as TRL passes conversational data) as the text of their assistant messages, or of all
    messages when none is marked assistant."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return _message_text(item)
    if isinstance(item, Sequence):
        messages = list(item)
        assistant = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
        return "\n".join(_message_text(m) for m in (assistant or messages))
    raise TypeError(f"expected a string or a list of chat messages, got {type(item).__name__}")


def as_texts(items: Sequence[Any]) -> list[str]:
    return [as_text(x) for x in items]


def column(kwargs: dict[str, Any], key: str, n: int) -> list | None:
    """``kwargs[key]`` checked to hold one entry per completion, or None when absent."""
    values = kwargs.get(key)
    if values is None:
        return None
    values = list(values)
    if len(values) != n:
        raise ValueError(f"kwarg {key!r} has {len(values)} entries for {n} completions")
    return values


def dialogue_groups(n: int, dialogue_ids: Sequence | None, turns: Sequence | None) -> list[list[int]]:
    """Indices of each dialogue's samples in turn order (batch order where ``turns`` is missing).

    Without ``dialogue_ids`` every sample is its own dialogue. A (dialogue_id, turn) seen twice is an error.
    """
    if dialogue_ids is None:
        return [[i] for i in range(n)]
    groups: dict[Any, list[int]] = {}
    for i, d in enumerate(dialogue_ids):
        groups.setdefault(d, []).append(i)
    out = []
    for d, idx in groups.items():
        if turns is not None:
            idx = sorted(idx, key=lambda i: turns[i])
            seen = [turns[i] for i in idx]
            if len(set(seen)) != len(seen):
                raise ValueError(f"dialogue {d!r} has two samples for the same turn: turns {seen}")
        out.append(idx)
    return out


def batch_normalize(values: Sequence[float | None], eps: float = 1e-8) -> list[float | None]:
    """(x - mean) / (std + eps) over the batch's non-None values (population std); None stays None."""
    present = [v for v in values if v is not None]
    if not present:
        return list(values)
    mean = sum(present) / len(present)
    std = math.sqrt(sum((v - mean) ** 2 for v in present) / len(present))
    return [None if v is None else (v - mean) / (std + eps) for v in values]
