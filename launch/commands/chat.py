"""``p2bot chat``: watch two agents with given personas talk, or talk to one yourself.

  p2bot chat --persona_a "I keep bees." "I drink black coffee." --persona_b "I teach chemistry."
  p2bot chat --human --persona_b "I teach chemistry." "I have two cats."     # you are speaker A
Without personas, a pair from the shipped sample set is used (``--pair_index``). With ``--human`` an empty line is
ignored; ``/quit``, ``quit``, Ctrl-D or Ctrl-C at the prompt end the chat. A reply that reaches ``--max_new_tokens``
before its end of turn ends at its last whole word, marked `` …``.
"""

from __future__ import annotations

import os
import re
import select
import sys
from dataclasses import dataclass, field

import torch
from transformers import set_seed

from launch.config_io import parse_configs
from launch.errors import option, read_data
from models.generation.sampling import generate, stop_token_ids
from models.loading.pretrained import resolve_device, resolve_dtype
from models.networks.transmitter import Transmitter
from models.prompting.prompt import PromptFormatter

QUIT = {"/quit", "/exit", "quit", "exit"}
CUT_MARK = " …"


@dataclass
class ChatConfig:
    model: str = field(default="embedded", metadata={"help": "policy: 'embedded', hub id, local path or a run's model dir"})
    persona_a: list[str] = field(default_factory=list, metadata={
        "help": "persona sentences of speaker A; with --human yours, shown to you as your role (the agent is not told "
                "its partner's persona: the prompt has no place for it, as in training)"})
    persona_b: list[str] = field(default_factory=list, metadata={"help": "persona sentences of speaker B (the agent, with --human)"})
    pair_index: int = field(default=0, metadata={"help": "sample-set dialogue whose personas fill the missing ones"})
    human: bool = field(default=False, metadata={"help": "you play speaker A; /quit, quit or Ctrl-D ends the chat"})
    exchanges: int = field(default=3, metadata={"help": "watch mode: A+B exchanges"})
    max_new_tokens: int = field(default=40, metadata={"help": "tokens per utterance"})
    do_sample: bool = field(default=True, metadata={"help": "sample (--no_do_sample: greedy)"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.9, metadata={"help": "nucleus sampling"})
    max_history_tokens: int = field(default=256, metadata={"help": "history budget of the prompt"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when available, else CPU), cpu, cuda, ..."})
    torch_dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16 or float16 (default: the checkpoint's)"})

    def __post_init__(self):
        if self.exchanges < 1 or self.max_new_tokens < 1:
            raise ValueError("exchanges and max_new_tokens must be >= 1")


class Agent:
    """One policy speaking for a persona, given the dialogue so far."""

    def __init__(self, transmitter: Transmitter, formatter: PromptFormatter, cfg: ChatConfig):
        self.transmitter, self.formatter, self.cfg = transmitter, formatter, cfg
        generation_config = getattr(transmitter.lm, "generation_config", None)
        self.stops = {*stop_token_ids(transmitter.tokenizer, generation_config), formatter.end_token_id}

    def reply(self, persona: list[str], history: list[str]) -> str:
        context = self.formatter.encode_context(persona, history)
        with torch.no_grad():
            (ids,) = generate(self.transmitter, [context], max_new_tokens=self.cfg.max_new_tokens,
                              do_sample=self.cfg.do_sample, temperature=self.cfg.temperature, top_p=self.cfg.top_p)
        text = self.formatter.decode_response(ids)
        if len(ids) >= self.cfg.max_new_tokens and not self.stops & set(ids):
            return trim_cut_reply(text)
        return text or "..."


def trim_cut_reply(text: str) -> str:
    """A reply cut at the token cap: ended at its last whole word (the cut one may be the start of another word)
    and marked with ``CUT_MARK``. A reply of one word keeps it."""
    text = text.rstrip()
    if text and text[-1].isalnum():
        text = re.sub(r"\S+$", "", text).rstrip() or text
    return text + CUT_MARK if text else CUT_MARK.strip()


def fill_personas(cfg: ChatConfig) -> tuple[list[str], list[str]]:
    if cfg.persona_a and cfg.persona_b:
        return cfg.persona_a, cfg.persona_b
    dialogues = read_data(None).dialogues  # the shipped sample set
    d = dialogues[cfg.pair_index % len(dialogues)]
    return cfg.persona_a or d.persona_a, cfg.persona_b or d.persona_b


def _show_persona(name: str, persona: list[str]) -> None:
    print(f"{name} persona:")
    for sentence in persona:
        print(f"  - {sentence}")


def watch(agent: Agent, persona_a: list[str], persona_b: list[str], exchanges: int) -> list[str]:
    history: list[str] = []
    for turn in range(2 * exchanges):
        speaker, persona = ("A", persona_a) if turn % 2 == 0 else ("B", persona_b)
        history.append(agent.reply(persona, history))
        print(f"{speaker}: {history[-1]}", flush=True)
    return history


class LineReader:
    """Lines from a file descriptor (standard input by default), waiting in short ``select`` slices so that a Ctrl-C
    always reaches the waiting main thread: a SIGINT that the kernel hands to one of torch's threads does not
    interrupt a read blocked in the main one, and that read would wait for the next key press."""

    def __init__(self, fd: int | None = None):
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.pending = b""

    def readline(self) -> str:
        """The next line with its newline; ``""`` at end of input (Ctrl-D)."""
        while b"\n" not in self.pending:
            while not select.select([self.fd], [], [], 0.2)[0]:
                pass
            chunk = os.read(self.fd, 4096)
            if not chunk:
                break
            self.pending += chunk
        line, newline, self.pending = self.pending.partition(b"\n")
        return (line + newline).decode(errors="replace")


def talk(agent: Agent, persona_b: list[str]) -> list[str]:
    """You speak as A, the agent as B, until ``/quit`` (or ``QUIT``), Ctrl-D or Ctrl-C at the prompt."""
    history: list[str] = []
    try:
        lines = LineReader()
    except (AttributeError, OSError, ValueError):  # a standard input without a file descriptor (tests, notebooks)
        lines = sys.stdin
    print("You are speaker A. Type a line and press Enter; /quit, quit or Ctrl-D ends the chat.", flush=True)
    while True:
        try:  # the prompt inside: a Ctrl-C that comes as soon as it shows is still "at the prompt"
            print("you> ", end="", flush=True)  # on stdout: input() would put the prompt on stderr under a tty
            raw = lines.readline()
        except KeyboardInterrupt:  # Ctrl-C at the prompt ends the chat like Ctrl-D
            raw = ""
        if not raw:  # Ctrl-D: end of input; the shell's prompt goes on a line of its own
            print(flush=True)
            break
        line = raw.strip()
        if not line:
            continue
        if line.lower() in QUIT:
            break
        history.append(line)
        history.append(agent.reply(persona_b, history))
        print(f"bot> {history[-1]}", flush=True)
    return history


CONFIG_TYPES = (ChatConfig,)  # what main parses; the docs build its parser from this


def main(argv: list[str] | None = None) -> int:
    (cfg,) = parse_configs(CONFIG_TYPES, argv, prog="p2bot chat", description=__doc__)
    set_seed(cfg.seed)
    persona_a, persona_b = fill_personas(cfg)
    print(f"loading {cfg.model} ...", flush=True)
    with option("--model", cfg.model):
        transmitter = Transmitter.from_pretrained(cfg.model, device=resolve_device(cfg.device),
                                                  torch_dtype=resolve_dtype(cfg.torch_dtype))
    transmitter.eval()
    agent = Agent(transmitter, PromptFormatter(transmitter.tokenizer, cfg.max_history_tokens), cfg)
    if cfg.human:
        if cfg.persona_a:
            _show_persona("your", cfg.persona_a)
        _show_persona("bot", persona_b)
        talk(agent, persona_b)
    else:
        _show_persona("A", persona_a)
        _show_persona("B", persona_b)
        watch(agent, persona_a, persona_b, cfg.exchanges)
    return 0
