"""The ``p2bot`` console script. Every subcommand is registered here, and only here."""

from __future__ import annotations

import importlib
import sys

# name -> (module exposing ``main(argv) -> int | None``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("launch.commands.data", "validate, convert or summarise a dialogue file"),
    "sft": ("launch.commands.sft", "fine-tune the Transmitter (LM + next-utterance head; full or LoRA)"),
    "eval": ("launch.commands.eval", "F1, Hits@1 and perplexity of a Transmitter on a data set"),
    "receiver": ("launch.commands.receiver", "train and evaluate the persona-perception Receiver"),
    "rl": ("launch.commands.rl", "PPO / REINFORCE self-play training"),
    "rl-trl": ("launch.commands.rl_trl", "self-play trained by TRL's GRPOTrainer (p2bot's rollout and rewards)"),
    "select": ("launch.commands.select", "which RL checkpoint to ship: self-play on validation pairs, best under guards"),
    "average": ("launch.commands.average", "one policy from several (e.g. RL seeds) by averaging their weights"),
    "chat": ("launch.commands.chat", "watch two agents talk, or talk to one yourself"),
    "recipe": ("launch.commands.recipe", "a whole experiment from one YAML: SFT, Receiver, RL, self-play eval of RL vs SFT"),
    "demo": ("launch.commands.demo", "the whole pipeline on the embedded defaults and the sample data"),
    "bench": ("launch.commands.bench", "throughput benchmarks against seed-style baselines"),
    "docs": ("launch.commands.docs", "generate, render and check the documentation (reference, results, links)"),
}


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: p2bot <command> [options]   (p2bot <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"p2bot: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        return run(name, rest)
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's status for SIGINT, not a traceback
        from launch.errors import debug

        if debug():
            raise
        print(f"\np2bot {name}: interrupted", file=sys.stderr)
        return 130


def dispatch(prog: str, subcommands: dict[str, str], argv: list[str] | None, doc: str | None) -> int:
    """``prog <name> [options]`` for a command with subcommands ``{name: "module:function"}``: the function's exit
    status on the remaining options."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage_ = f"usage: {prog} {{" + ",".join(subcommands) + f"}} [options]   ({prog} <name> --help)"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage_ + "\n\n" + (doc or "").strip())
        return 0
    if argv[0] not in subcommands:
        print(f"{prog}: unknown subcommand {argv[0]!r}\n{usage_}", file=sys.stderr)
        return 2
    module, func = subcommands[argv[0]].split(":")
    return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)


def run(name: str, rest: list[str]) -> int:
    """Command ``name`` on its options ``rest``; the exit status."""
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(f"p2bot: command {name!r} is not available in this version", file=sys.stderr)
        return 2
    from launch.errors import USER_ERRORS, CliError, debug, report

    try:
        return int(module.main(rest) or 0)
    except SystemExit as exit_:  # argparse / parse_configs: --help (0) or a bad option (2)
        code = exit_.code
        if isinstance(code, str):  # SystemExit("message"): the message is the error line
            print(code, file=sys.stderr)
        return code if isinstance(code, int) else (0 if code is None else 1)
    except (CliError, *USER_ERRORS) as err:  # a missing file or model, malformed data: one line, not a traceback
        if debug():
            raise
        return report(name, err)


if __name__ == "__main__":
    sys.exit(main())
