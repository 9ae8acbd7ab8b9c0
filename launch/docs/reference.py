"""docs/reference/configuration.md, generated from the config dataclasses and parsers of every command.

One section per command (``launch.docs.parsers.commands``): a table of its options (field, type, default, help)
from the dataclasses it parses, or from its argparse parser where it has no config dataclass. Every field is also a
key of the command's ``--config`` YAML. Of ``transformers.TrainingArguments`` (``p2bot sft``) the page lists the
fields a p2bot user sets most (``TRAINING_ARGUMENTS_SHOWN``) and links the rest.
``p2bot docs reference`` writes the page; ``--check`` exits 1 when the committed page differs from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

REFERENCE_PAGE = Path("docs") / "reference" / "configuration.md"
TRAINING_ARGUMENTS_SHOWN = (
    "output_dir", "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "max_grad_norm",
    "logging_steps", "save_strategy", "save_steps", "save_total_limit", "eval_strategy", "eval_steps", "seed",
    "bf16", "fp16", "gradient_checkpointing", "report_to", "run_name", "resume_from_checkpoint", "deepspeed",
    "dataloader_num_workers",
)
TRAINING_ARGUMENTS_DOCS = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"

HEADER = """# Configuration reference

Every option of every `p2bot` command, generated from the code by `p2bot docs reference` (do not edit by hand; the
test suite fails when this page and the code disagree). Each option is given on the command line as `--name value`
or as a key `name: value` of the YAML file passed with `--config`; the command line wins. Booleans take
`--name true|false` (or `--name` alone for true). Lists take several values (`--name a b`).
"""


def _annotation(config_type: type, name: str):
    """The field's annotation as the class wrote it (HfArgumentParser replaces ``Field.type`` with the resolved
    type once a parser is built, so ``Field.type`` depends on what ran before)."""
    for klass in config_type.__mro__:
        annotations = klass.__dict__.get("__annotations__", {})
        if name in annotations:
            return annotations[name]
    return None


def _type_text(t) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, type) and not typing.get_args(t):
        return t.__name__
    args = typing.get_args(t)
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_text(a) for a in args)
    if args:
        origin = typing.get_origin(t)
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_text(a) for a in args)}]"
    return str(t).replace("typing.", "")


def _type_name(config_type: type, field: dataclasses.Field) -> str:
    return _type_text(_annotation(config_type, field.name) or field.type).replace("Optional[", "optional[")


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return "(required)"


def _cell(value: Any) -> str:
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _code(value: Any) -> str:
    if value == "(required)":
        return "required"
    if isinstance(value, str) and value == "":
        return '`""`'
    text = repr(value) if isinstance(value, str) else str(value)
    text = text.strip("'") if isinstance(value, str) else text
    return f"`{_cell(text)}`"


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| option | type | default | help |", "| --- | --- | --- | --- |"]
    lines += [f"| `{name}` | {type_} | {default} | {help_} |" for name, type_, default, help_ in rows]
    return "\n".join(lines)


def dataclass_rows(config_type: type) -> list[tuple[str, str, str, str]]:
    from transformers import TrainingArguments

    shown = TRAINING_ARGUMENTS_SHOWN if issubclass(config_type, TrainingArguments) else None
    rows = []
    for f in dataclasses.fields(config_type):
        if not f.init or f.name.startswith("_") or (shown is not None and f.name not in shown):
            continue
        rows.append((f.name, _cell(_type_name(config_type, f)), _code(_default(f)), _cell(f.metadata.get("help", ""))))
    return rows


def parser_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str, str, str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        name = " / ".join(action.option_strings) if action.option_strings else action.dest
        if action.choices:
            type_ = " \\| ".join(map(str, action.choices))
        elif action.nargs == 0:
            type_ = "flag"
        else:
            type_ = getattr(action.type, "__name__", "str") if action.type else "str"
        default = "required" if (action.required or not action.option_strings) and action.default is None else (
            _code(action.default) if action.default not in (None, argparse.SUPPRESS) else "-")
        rows.append((name, type_, default, _cell(action.help or "")))
    return rows


def _summary(module_name: str) -> str:
    import importlib

    doc = (importlib.import_module(module_name).__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def render() -> str:
    from transformers import TrainingArguments

    from launch.docs.parsers import commands

    parts = [HEADER.rstrip(), "", "Commands: " + ", ".join(f"`{c.prog}`" for c in commands()) + ".", ""]
    for command in commands():
        parts += [f"## {command.prog}", ""]
        summary = _summary(command.module)
        if summary and len(command.words) == 1:
            parts += [summary, ""]
        types = command.config_types()
        if types is None:
            parts += [_table(parser_rows(command.parser())), ""]
            continue
        for config_type in types:
            if len(types) > 1:
                parts += [f"### `{config_type.__name__}`", ""]
            if issubclass(config_type, TrainingArguments):
                parts += [f"The `transformers.TrainingArguments` fields most used with p2bot; every other field of "
                          f"[TrainingArguments]({TRAINING_ARGUMENTS_DOCS}) works too.", ""]
            parts += [_table(dataclass_rows(config_type)), ""]
    return "\n".join(parts).rstrip() + "\n"


def write_reference(root: str | Path = ".", check: bool = False) -> bool:
    """Write the page under ``root`` (with ``check``: write nothing); True when the page was (or would be) changed."""
    from data_prep.files.atomic import write_text_atomic

    path = Path(root) / REFERENCE_PAGE
    text = render()
    if path.is_file() and path.read_text() == text:
        return False
    if not check:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    return True


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2bot docs reference", allow_abbrev=False,
                                description="Write docs/reference/configuration.md from the config dataclasses.")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the committed page is stale")
    p.add_argument("--root", default=".", help="the repository root")
    return p


def reference_command(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    changed = write_reference(args.root, check=args.check)
    page = Path(args.root) / REFERENCE_PAGE
    if args.check and changed:
        print(f"p2bot docs reference: {page} is stale; run `p2bot docs reference`", file=sys.stderr)
        return 1
    print(f"{'wrote' if changed else 'current'}: {page}")
    return 0
