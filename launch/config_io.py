"""Configs are dataclasses: parsed from ``--config file.yaml`` plus CLI overrides, saved with every run."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from data_prep.files.atomic import write_text_atomic

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# One name per idea on every command: ``--data`` is the dialogue file, ``--model`` the model a command trains or runs.
# Old names, per command ({old: new}), still work on the command line and as ``--config`` keys, with a deprecation line.
RENAMED: dict[str, dict[str, str]] = {
    "p2bot rl": {"data_path": "data"},
    "p2bot receiver": {"train_data": "data"},
    "p2bot chat": {"model_name_or_path": "model"},
}
# Other names of a field, accepted without a note ({name: field}): rl and receiver keep TRL's ``model_name_or_path``
# (rl's ``ref_``/``partner_``/``value_model_name_or_path`` follow it), and take ``--model`` as every command does.
ALSO_CALLED: dict[str, dict[str, str]] = {
    "p2bot rl": {"model": "model_name_or_path"},
    "p2bot rl-trl": {"model": "model_name_or_path"},
    "p2bot receiver": {"model": "model_name_or_path"},
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The command's description as written (its example command lines kept apart); argparse's ``(default: ...)``
    after each option's help, except where the help already states its default; the ``--no_X`` switch of a boolean
    ``X`` reads as what it does (its own default, False, would read as X's)."""

    def _get_help_string(self, action):
        help_ = re.sub(r"(?<!%)%(?![(%])", "%%", action.help or "")  # a plain '%' ("~30% more") is not a format
        if action.nargs == 0 and action.const is False and action.option_strings[0].startswith("--no_"):
            return f"turn --{action.dest} off"
        stated = "%(default)" in help_ or re.search(r"\(default\b", help_)
        if stated or action.default is argparse.SUPPRESS or not (action.option_strings or action.nargs in ("?", "*")):
            return help_
        return f"{help_} (default: %(default)s)"


class _Renamed(argparse.Action):
    """An old option name: prints the deprecation line, then stores the value under the new name."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} is deprecated, use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _spellings(name: str) -> list[str]:
    """``--a_b`` and HfArgumentParser's dashed ``--a-b``."""
    return list(dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}")))


class CommandParser(TrlParser):
    """TrlParser for one ``p2bot`` command: no abbreviated options (``--model`` never means ``--model_name_or_path``
    by prefix), help that states each default once, and the command's ``RENAMED`` and ``ALSO_CALLED`` names."""

    def __init__(self, dataclass_types: tuple[type, ...], prog: str, description: str = ""):
        super().__init__(dataclass_types, prog=prog, description=description, allow_abbrev=False,
                         formatter_class=HelpFormatter)
        self.renamed = RENAMED.get(prog, {})
        self.also_called = ALSO_CALLED.get(prog, {})
        for alias, name in self.also_called.items():
            self._add_name(alias, name, help=f"the same as --{name}")
        for old, new in self.renamed.items():
            self._add_name(old, new, action=_Renamed, new=f"--{new}", help=argparse.SUPPRESS)

    def _add_name(self, alias: str, name: str, **kwargs) -> None:
        target = self._option_string_actions[f"--{name}"]
        self.add_argument(*_spellings(alias), dest=name, type=target.type, nargs=target.nargs, const=target.const,
                          choices=target.choices, metavar=target.metavar or name.upper(), default=argparse.SUPPRESS,
                          **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        """argparse's error for an unknown option, before any config is built (HfArgumentParser would build the
        configs first, so their checks would report on defaults the user did not mean)."""
        namespace, rest = super().parse_known_args(args, namespace)
        if rest:
            self.error(f"unrecognized arguments: {' '.join(rest)}")
        return namespace, rest

    def set_defaults_with_config(self, **config) -> list[str]:
        """The ``--config`` file's values as defaults, its keys by their field names (``canonical_keys``)."""
        return super().set_defaults_with_config(**canonical_keys(self.prog, config))


def canonical_keys(prog: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (options of command ``prog``, e.g. ``"p2bot rl"``) with its old and other names (``RENAMED``,
    ``ALSO_CALLED``) replaced by the field names; an old name prints its deprecation line. Raises ``ValueError`` when
    a field is set under two names."""
    out = dict(config)
    renamed = RENAMED.get(prog, {})
    for old, new in {**renamed, **ALSO_CALLED.get(prog, {})}.items():
        if old not in out:
            continue
        if new in out:
            raise ValueError(f"config keys {old} and {new} are the same option: keep {new}")
        if old in renamed:
            print(f"{prog}: config key {old} is deprecated, use {new}", file=sys.stderr)
        out[new] = out.pop(old)
    return out


def parse_configs(dataclass_types: tuple[type, ...], argv: list[str] | None, prog: str, description: str = ""):
    """Parse ``argv`` into one instance per dataclass type (YAML from ``--config``, CLI wins).

    Returns a tuple of dataclass instances in the order of ``dataclass_types``. An invalid combination (a
    ``ValueError`` from a config's ``__post_init__``) is reported as ``prog: error: ...`` and exits with 2,
    as argparse does for a bad flag. A config's ``log_level`` field, if any, configures logging. Options are
    spelled out in full; the command's old option names still work (``RENAMED``).
    """
    parser = CommandParser(dataclass_types, prog=prog, description=description)
    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args:
        path = args[args.index("--config") + 1] if args.index("--config") + 1 < len(args) else None
        if path is None or not os.path.isfile(path):
            raise SystemExit(f"{prog}: --config: no such file: {path}")
    try:
        configs = tuple(parser.parse_args_and_config(args=args))
        configure_logging(next((c.log_level for c in configs if hasattr(c, "log_level")), None))
        return configs
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def start_command(config_type: type, argv: list[str] | None, prog: str, description: str = "") -> tuple[Any, Path]:
    """The common start of a one-config command: tokenizers kept to one process, ``argv`` parsed into
    ``config_type`` (see ``parse_configs``), its ``torch_threads`` applied (0: torch's default), the resolved config
    saved to its ``output_dir``. Returns the config and that directory."""
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    (cfg,) = parse_configs((config_type,), argv, prog=prog, description=description)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    out = Path(cfg.output_dir)
    save_resolved_config(out, cfg)
    return cfg, out


def configure_logging(level: str | None) -> None:
    """Python logging (p2bot, accelerate, DeepSpeed) and transformers' verbosity at ``level``.

    None or ``"passive"`` (HF ``TrainingArguments``' default, which its ``Trainer`` applies itself) leave them as
    they are; an unknown level is a ``ValueError`` naming ``log_level``.
    """
    if level in (None, "passive"):
        return
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level={level!r}: expected one of {', '.join(LOG_LEVELS)}")
    import transformers

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(getattr(logging, level.upper()))
    transformers.utils.logging.set_verbosity(getattr(logging, level.upper()))


def config_to_dict(*configs: Any) -> dict[str, Any]:
    """Merge dataclass configs into one plain mapping (keys of later configs win on clashes)."""
    out: dict[str, Any] = {}
    for cfg in configs:
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            elif hasattr(value, "value") and type(value).__module__ != "builtins":  # enums
                value = value.value
            out[f.name] = value
    return out


def save_resolved_config(output_dir: str | os.PathLike, *configs: Any, name: str = "resolved_config.yaml") -> Path:
    """Write the merged config to ``output_dir/name`` atomically; returns the path."""
    path = Path(output_dir) / name
    return write_text_atomic(path, yaml.safe_dump(config_to_dict(*configs), sort_keys=True, default_flow_style=False))
