"""The argparse parser of every ``p2bot`` command and subcommand, built the way the command builds it.

A command module (``launch.cli.COMMANDS``) exposes how it parses its options in one of three ways:

- ``SUBCOMMANDS``: ``{name: "module:function"}`` for a dispatcher (``p2bot bench eval``, ``p2bot docs check``); each
  target module is then asked the same way, ``PARSERS[function]`` first;
- ``build_parser()``: a plain ``argparse`` parser (``p2bot data``, ``p2bot recipe``);
- ``CONFIG_TYPES``: the config dataclasses it parses (``launch.config_io.CommandParser``), whose fields are also what
  the configuration reference lists.

The docs checker and the configuration reference use this registry, so neither keeps its own list of options.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Command:
    """One leaf command: its words after ``p2bot`` (``("bench", "eval")``), its module and entry function."""

    words: tuple[str, ...]
    module: str
    function: str

    @property
    def prog(self) -> str:
        return "p2bot " + " ".join(self.words)

    def config_types(self) -> tuple[type, ...] | None:
        """The config dataclasses the command parses, or None when it builds a plain argparse parser."""
        module = importlib.import_module(self.module)
        if self.function in getattr(module, "PARSERS", {}) or hasattr(module, "build_parser"):
            return None
        return getattr(module, "CONFIG_TYPES", None)

    def parser(self) -> argparse.ArgumentParser:
        module = importlib.import_module(self.module)
        builders = getattr(module, "PARSERS", {})
        if self.function in builders:
            return builders[self.function]()
        if hasattr(module, "build_parser"):
            return module.build_parser()
        types = getattr(module, "CONFIG_TYPES", None)
        if types is None:
            raise LookupError(f"{self.prog}: {self.module} has neither PARSERS[{self.function!r}], build_parser() "
                              "nor CONFIG_TYPES")
        from launch.config_io import CommandParser

        parser = CommandParser(tuple(types), prog=self.prog, description=module.__doc__ or "")
        # TrlParser reads --config before argparse sees the rest; here it is an option like the others
        parser.add_argument("--config", default=None, help="a YAML file of these options (the command line wins)")
        return parser


def _target(spec: str) -> tuple[str, str]:
    module, _, function = spec.partition(":")
    return module, function or "main"


def _leaves(words: tuple[str, ...], module: str, function: str) -> list[Command]:
    mod: ModuleType = importlib.import_module(module)
    subs = getattr(mod, "SUBCOMMANDS", None) if function == "main" else None
    if not subs:
        return [Command(words, module, function)]
    out: list[Command] = []
    for name, spec in subs.items():
        out += _leaves((*words, name), *_target(spec))
    return out


def commands() -> list[Command]:
    """Every leaf command, in ``COMMANDS`` order."""
    from launch.cli import COMMANDS

    out: list[Command] = []
    for name, (module, _) in COMMANDS.items():
        out += _leaves((name,), module, "main")
    return out


def subcommands(words: tuple[str, ...]) -> dict[str, str] | None:
    """The subcommand names of dispatcher ``words`` (e.g. ``("bench",)``), or None if ``words`` is a leaf."""
    from launch.cli import COMMANDS

    if not words or words[0] not in COMMANDS:
        return None
    module, function = COMMANDS[words[0]][0], "main"
    for word in words[1:]:
        subs = getattr(importlib.import_module(module), "SUBCOMMANDS", None) if function == "main" else None
        if not subs or word not in subs:
            return None
        module, function = _target(subs[word])
    subs = getattr(importlib.import_module(module), "SUBCOMMANDS", None) if function == "main" else None
    return dict(subs) if subs else None


def find(words: tuple[str, ...]) -> Command | None:
    return next((c for c in commands() if c.words == words), None)
