"""Old module paths that still import, with a ``DeprecationWarning``: ``models.transmitter`` is now
``models.networks.transmitter``, and so on (``MOVED``). Each top-level package installs the finder on import."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "models.atomic": "data_prep.files.atomic",
    "models.jsonl_log": "data_prep.files.jsonl_log",
    "models.transmitter": "models.networks.transmitter",
    "models.receiver": "models.networks.receiver",
    "models.critic": "models.networks.critic",
    "models.prompt": "models.prompting.prompt",
    "models.prompt_style": "models.prompting.prompt_style",
    "models.kv_reuse": "models.generation.kv_reuse",
    "models.embedded": "models.loading.embedded",
    "models.sft": "models.training.sft",
    "models.receiver_training": "models.training.receiver_training",
    "models.scorers": "models.scoring.scorers",
    "models.judges": "models.scoring.judges",
    "models.metrics": "models.scoring.metrics",
    "models.text_metrics": "models.scoring.text_metrics",
    "models.lexical": "models.scoring.lexical",
    "models.evaluation": "models.scoring.gold_eval",
    "models.tracking": "models.infra.tracking",
    "models.train_state": "models.infra.train_state",
    "models.model_card": "models.infra.model_card",
    "models.hub": "models.infra.hub",
    "rl.copy_guard": "rl.guards.copy_guard",
    "rl.eval_stats": "rl.evaluation.stats",
    "rl.selection": "rl.evaluation.selection",
    "rl.averaging": "rl.evaluation.averaging",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.target}; import it from there", DeprecationWarning, stacklevel=3)
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))


def install() -> None:
    """Put the finder for ``MOVED`` on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
