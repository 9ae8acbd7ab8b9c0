"""Configs are dataclasses: parsed from ``--config file.yaml`` plus CLI overrides, saved with every run."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from data_prep.files.atomic import write_text_atomic

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def parse_configs(dataclass_types: tuple[type, ...], argv: list[str] | None, prog: str, description: str = ""):
    """Parse ``argv`` into one instance per dataclass type (YAML from ``--config``, CLI wins).

    Returns a tuple of dataclass instances in the order of ``dataclass_types``. An invalid combination (a
    ``ValueError`` from a config's ``__post_init__``) is reported as ``prog: error: ...`` and exits with 2,
    as argparse does for a bad flag. A config's ``log_level`` field, if any, configures logging.
    """
    parser = TrlParser(dataclass_types, prog=prog, description=description)
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
