"""Docs that stay true: every relative link, anchor and command line of README.md and docs/ is checked.

- **links**: every relative Markdown link (``[text](path#anchor)``, images too) names a file or folder that exists;
  an ``#anchor`` names a heading of the target page (GitHub's slugs) or an ``<a id=...>`` in it;
- **commands**: every command line in a code block, and every inline code span that starts with a command, is
  parsed against the real parsers (``launch.docs.parsers``): ``p2bot ...``, ``python -m launch.cli ...``,
  ``accelerate launch [its options] -m launch.cli ...`` (its options checked against accelerate's own parser) and
  ``bash launch/run.sh demo|test|setup ...``. The command and subcommand, every ``--option``, every choice and every
  typed value (an int, a float, a boolean) must exist or convert; placeholders (``...``, ``<dir>``, ``$VAR``,
  ``NAME``) stand for any value, and ``a|b`` in inline code for either word;
- **paths**: a token naming a file of the repository (``launch/configs/...yaml``) names one that exists.

The comment headers of the experiment and accelerate YAMLs (``launch/configs/**.yaml``) are checked the same way.
``p2bot docs check`` runs it; the test suite runs it on the committed docs.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
REPO_PATH = re.compile(r"^(?:\./)?(?:launch|docs|data_prep|models|rewards|rl|tests)/[\w./-]*\.(?:ya?ml|py|md|json|sh|toml)$")
PLACEHOLDER = re.compile(r"^(?:\.\.\.|…|<[^>]*>|\$\{?\w+\}?.*|[A-Z][A-Z0-9_]*|\{[^}]*\}|\*)$")
STARTS = ("p2bot", "python -m launch.cli", "python3 -m launch.cli", "accelerate launch", "bash launch/run.sh")
RUN_SH_ACTIONS = ("demo", "test", "setup")
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console", "zsh")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


# --- anchors ---


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, letters/digits/``-``/``_`` kept, spaces to ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    keep = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_ " or cat[0] in "LM" or cat in ("Nd", "Nl"):
            keep.append("-" if ch == " " else ch)
    return "".join(keep)


def anchors(text: str) -> set[str]:
    out: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for _, line in prose_lines(text):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


# --- reading a page ---


def prose_lines(text: str):
    """(line number, line) of the lines outside fenced code blocks."""
    fenced = False
    for i, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield i, line


def code_lines(text: str):
    """(line number, logical line) of the lines inside fenced shell blocks (```` ```bash ````, ``sh``, ``shell``,
    ``console`` or no language), ``\\`` continuations joined; ``text``, ``yaml`` and other blocks are not commands."""
    fenced, shell, buf, start = False, False, "", 0
    for i, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced, buf = not fenced, ""
            shell = FENCE.sub("", line).strip().lower() in SHELL_BLOCKS
            continue
        if not fenced or not shell:
            continue
        if not buf:
            start = i
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield start, buf + line
        buf = ""


def inline_spans(text: str):
    for i, line in prose_lines(text):
        for m in INLINE_CODE.finditer(line):
            yield i, m.group(2).strip()


# --- links ---


def check_links(page: Path, root: Path) -> list[Problem]:
    text = page.read_text()
    rel = str(page.relative_to(root))
    problems = []
    for i, line in prose_lines(text):
        line = INLINE_CODE.sub("", line)
        targets = [m.group(1) for m in LINK.finditer(line)] + [m.group(1) for m in [REF_LINK.match(line)] if m]
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page.resolve()
            if path_part and not dest.exists():
                problems.append(Problem(rel, i, f"link to {target!r}: no such file {os.path.relpath(dest, root)}"))
                continue
            if anchor and dest.is_file() and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                problems.append(Problem(rel, i, f"link to {target!r}: {os.path.relpath(dest, root)} has no heading "
                                                f"with anchor #{anchor}"))
    return problems


# --- commands ---


def _placeholder(token: str) -> bool:
    return bool(PLACEHOLDER.match(token.strip("[]"))) or "..." in token or "…" in token


def _segments(line: str, inline: bool) -> list[list[str]]:
    """The simple commands of a shell line (split at ``|``, ``&&``, ``||``, ``;``), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=not inline)
    lexer.whitespace_split = True
    lexer.commenters = "" if inline else "#"
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a command line we can read
        return []
    out, cur = [], []
    for tok in tokens:
        if tok and (set(tok) <= set("|&;()") if not inline else tok in ("&&", "||", ";")):
            out.append(cur)
            cur = []
        else:
            cur.append(tok)
    out.append(cur)
    return [s for s in out if s]


def _strip_prefix(tokens: list[str]) -> list[str]:
    """Without a prompt ``$``, environment assignments and ``time``/``nohup``/``exec``."""
    while tokens and (tokens[0] in ("$", "time", "nohup", "exec", "env") or re.match(r"^\w+=", tokens[0])):
        tokens = tokens[1:]
    return tokens


def _alternatives(token: str, inline: bool) -> list[str]:
    return token.split("|") if inline and "|" in token.strip("|") else [token]


def _values(action: argparse.Action, tokens: list[str], i: int, eq: str | None) -> tuple[list[str], int]:
    """The values option ``action`` takes from ``tokens[i:]`` (or its ``=value``), and the index after them."""
    if eq is not None:
        return [eq], i
    nargs = action.nargs
    if nargs == 0:
        return [], i
    if nargs is None or isinstance(nargs, int):
        n = 1 if nargs is None else nargs
        return tokens[i:i + n], i + n
    taken = []
    while i < len(tokens) and not (tokens[i].startswith("-") and not re.match(r"^-\d", tokens[i])):
        taken.append(tokens[i])
        i += 1
        if nargs == "?":
            break
    return taken, i


def _check_value(action: argparse.Action, value: str, where: str) -> str | None:
    if _placeholder(value):
        return None
    if action.choices is not None:
        try:
            converted = action.type(value) if callable(action.type) else value
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            converted = value
        if converted not in action.choices and value not in action.choices:
            return f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}"
        return None
    if callable(action.type):
        try:
            action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            return f"{where}: value {value!r} does not parse ({err})"
    return None


def check_parser_args(parser: argparse.ArgumentParser, tokens: list[str], prog: str, inline: bool = False) -> list[str]:
    """What is wrong with ``tokens`` as options of ``parser`` (unknown options, bad choices and values)."""
    errors = []
    positionals = [a for a in parser._actions if not a.option_strings]
    n_pos, i = 0, 0
    while i < len(tokens):
        raw = tokens[i]
        tok = raw.strip("[]")
        i += 1
        if not tok or tok in ("options", "-h", "--help") or raw in ("[options]", "[args...]"):
            continue
        if tok.startswith("-") and not re.match(r"^-\d", tok):
            name, sep, eq = tok.partition("=")
            action = parser._option_string_actions.get(name)
            if action is None:
                errors.append(f"{prog}: no option {name}")
                while i < len(tokens) and not tokens[i].startswith("-"):  # its values: unknown, so not positionals
                    i += 1
                continue
            values, i = _values(action, tokens, i, eq if sep else None)
            for value in values:
                error = _check_value(action, value.strip("[]"), f"{prog} {name}")
                if error:
                    errors.append(error)
            continue
        if _placeholder(tok):
            n_pos += 1
            continue
        if n_pos < len(positionals):
            action = positionals[n_pos]
            if action.nargs not in ("*", "+", argparse.REMAINDER):
                n_pos += 1
            errors += [e for alt in _alternatives(tok, inline) if (e := _check_value(action, alt, f"{prog} {action.dest}"))]
        elif not positionals:
            errors.append(f"{prog}: unexpected argument {tok!r}")
    return errors


def check_p2bot(words: list[str], inline: bool) -> list[str]:
    """What is wrong with ``p2bot`` + ``words``."""
    from launch.docs.parsers import find, subcommands

    if not words or _placeholder(words[0]) or words[0] in ("-h", "--help", "help"):
        return []
    path: tuple[str, ...] = ()
    rest = list(words)
    while True:
        subs = subcommands(path) if path else None
        if path and subs is None:
            break
        if not rest or rest[0] in ("-h", "--help") or _placeholder(rest[0]):
            return []
        from launch.cli import COMMANDS

        names = COMMANDS if not path else subs
        alternatives = _alternatives(rest[0], inline)
        unknown = [a for a in alternatives if a not in names]
        if unknown:
            return [f"p2bot {' '.join(path)}{' ' if path else ''}{unknown[0]}: no such "
                    f"{'command' if not path else 'subcommand'} (known: {', '.join(names)})"]
        if len(alternatives) > 1:  # ``bench eval|receiver``: each alternative with the rest
            return [e for a in alternatives for e in check_p2bot([*path, a, *rest[1:]], inline)]
        path, rest = (*path, rest[0]), rest[1:]
    command = find(path)
    if command is None:
        return [f"p2bot {' '.join(path)}: not found in the command registry"]
    return check_parser_args(command.parser(), rest, command.prog, inline)


def _accelerate_parser() -> argparse.ArgumentParser:
    from accelerate.commands.launch import launch_command_parser

    return launch_command_parser()


def check_command(tokens: list[str], inline: bool) -> list[str]:
    """What is wrong with one simple command (tokens of a shell line); [] for lines that are not ours."""
    tokens = _strip_prefix(tokens)
    if not tokens:
        return []
    head = tokens[0].rsplit("/", 1)[-1] if tokens[0].endswith("/p2bot") else tokens[0]
    if head == "p2bot":
        return check_p2bot(tokens[1:], inline)
    if head in ("python", "python3") or head.endswith("/python"):
        if tokens[1:3] == ["-m", "launch.cli"]:
            return check_p2bot(tokens[3:], inline)
        return []
    if head == "bash" and len(tokens) > 1 and tokens[1] in ("launch/run.sh", "./launch/run.sh"):
        if len(tokens) < 3 or _placeholder(tokens[2]):
            return []
        actions = _alternatives(tokens[2], inline)
        bad = [a for a in actions if a not in RUN_SH_ACTIONS]
        if bad:
            return [f"bash launch/run.sh {bad[0]}: no such action (known: {', '.join(RUN_SH_ACTIONS)})"]
        return check_p2bot(["demo", *tokens[3:]], inline) if actions == ["demo"] else []
    if head == "accelerate" and len(tokens) > 1 and tokens[1] == "launch":
        rest = tokens[2:]
        if "-m" in rest:
            k = rest.index("-m")
            accel, module, program = rest[:k], rest[k + 1:k + 2], rest[k + 2:]
            errors = check_parser_args(_accelerate_parser(), accel, "accelerate launch")
            if module and module[0] != "launch.cli" and not _placeholder(module[0]):
                errors.append(f"accelerate launch -m {module[0]}: p2bot's entry point is -m launch.cli")
            return errors + check_p2bot(program, inline)
        return []
    return []


def _starts_with_command(text: str) -> bool:
    text = re.sub(r"^\$\s+", "", text.strip())
    text = re.sub(r"^(?:\w+=\S*\s+)+", "", text)
    return any(text == s or text.startswith(s + " ") for s in STARTS) or text.startswith(".venv/bin/p2bot")


def check_commands_in(text: str, rel: str, code_blocks: bool = True) -> list[Problem]:
    problems = []
    candidates = [(i, line, False) for i, line in code_lines(text)] if code_blocks else []
    candidates += [(i, span, True) for i, span in inline_spans(text)]
    for i, line, inline in candidates:
        if not _starts_with_command(line) and not (not inline and re.search(r"\b(p2bot|launch\.cli|run\.sh)\b", line)):
            continue
        for tokens in _segments(line, inline):
            for error in check_command(tokens, inline):
                problems.append(Problem(rel, i, error))
    return problems


def check_paths_in(text: str, rel: str, root: Path) -> list[Problem]:
    problems = []
    candidates = list(code_lines(text)) + list(inline_spans(text))
    for i, line in candidates:
        for token in re.split(r"[\s=,;\"'()\[\]]+", line):
            if REPO_PATH.match(token) and "*" not in token and not (root / token).exists():
                problems.append(Problem(rel, i, f"{token}: no such file in the repository"))
    return problems


def yaml_header_lines(path: Path) -> str:
    """The comment lines of a YAML file, as one fenced block of their text (so the command checker reads them)."""
    lines = [re.sub(r"^#\s?", "", line) for line in path.read_text().splitlines() if line.lstrip().startswith("#")]
    return "```\n" + "\n".join(re.sub(r"^\s+", "", line) for line in lines) + "\n```\n"


def doc_pages(root: Path) -> list[Path]:
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.is_file()]


def check_docs(root: str | os.PathLike = ".") -> list[Problem]:
    """Every problem of README.md, docs/**/*.md and the YAML headers under launch/configs/ in repository ``root``."""
    root = Path(root).resolve()
    problems: list[Problem] = []
    for page in doc_pages(root):
        text, rel = page.read_text(), str(page.relative_to(root))
        problems += check_links(page, root)
        problems += check_commands_in(text, rel)
        problems += check_paths_in(text, rel, root)
    for config in sorted((root / "launch" / "configs").rglob("*.yaml")):
        text, rel = yaml_header_lines(config), str(config.relative_to(root))
        problems += check_commands_in(text, rel)
        problems += check_paths_in(text, rel, root)
    return sorted(set(problems), key=lambda p: (p.path, p.line, p.message))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2bot docs check", allow_abbrev=False,
                                description="Check every relative link, anchor, repository path and command line of "
                                            "README.md and docs/ (and the YAML headers under launch/configs/).")
    p.add_argument("--root", default=".", help="the repository root")
    return p


def docs_check_command(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    problems = check_docs(args.root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"p2bot docs check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("p2bot docs check: every link, anchor, path and command line is real")
    return 0

