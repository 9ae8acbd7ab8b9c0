"""``p2bot data validate|convert|stats PATH``: check, convert to our JSONL, or summarise a dialogue file."""

from __future__ import annotations

import argparse
import json
import sys

from data_prep import FORMATS, DataFormatError, read_dialogues, write_jsonl
from data_prep.hf import parse_column_mapping
from data_prep.stats import dialogue_stats
from launch.errors import read_summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2bot data", description=__doc__, allow_abbrev=False)
    p.add_argument("action", choices=("validate", "convert", "stats"))
    p.add_argument("path", help="ParlAI .txt, Synthetic-Persona-Chat .csv, our .jsonl/.json, or a datasets folder / hub id "
                                "(owner/name or owner/name@revision)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="force the input format (default: from the name; for datasets input the PersonaChat hub layouts "
                        "are recognised by their columns)")
    p.add_argument("--strict", action="store_true", help="make every repair or skipped record an error")
    p.add_argument("--column_mapping", default=None, help='for datasets input: JSON, e.g. \'{"turns": "dialogue"}\'')
    p.add_argument("--split", default="train", help="for datasets input: which split")
    p.add_argument("--revision", default=None, help="for a hub id: the commit, tag or branch to read (pins the data)")
    p.add_argument("--config_name", default=None, help="for a hub id: the dataset configuration (e.g. 'full')")
    p.add_argument("-o", "--output", default=None, help="convert: the .jsonl file to write")
    p.add_argument("--json", action="store_true", help="stats: print JSON instead of a table")
    p.add_argument("--show_warnings", type=int, default=10, help="how many repair/skip warnings to print")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        mapping = parse_column_mapping(args.column_mapping)
        result = read_dialogues(args.path, format=args.format, strict=args.strict, column_mapping=mapping, split=args.split,
                                revision=args.revision, config_name=args.config_name)
    except (DataFormatError, FileNotFoundError, ValueError) as err:
        print(f"p2bot data: error: {err}", file=sys.stderr)
        return 1
    st = result.stats
    for w in st.warnings[: args.show_warnings]:
        print(f"warning: {w}", file=sys.stderr)
    if len(st.warnings) > args.show_warnings:
        print(f"... and {len(st.warnings) - args.show_warnings} more warnings", file=sys.stderr)
    read_line = read_summary(result)
    if args.action == "validate":
        print(f"OK {read_line}")
    elif args.action == "convert":
        if not args.output:
            print("p2bot data convert: -o/--output is required", file=sys.stderr)
            return 2
        n = write_jsonl(result.dialogues, args.output)
        print(f"{read_line}\nwrote {n} dialogues to {args.output}")
    else:
        stats = {"rows_read": st.rows_read, "dialogues_kept": st.dialogues_kept, "repaired": st.repaired,
                 "skipped": st.skipped, **dialogue_stats(result.dialogues)}
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            print(read_line)
            width = max(len(k) for k in stats)
            for key, value in stats.items():
                print(f"  {key:<{width}}  {value}")
    return 0
