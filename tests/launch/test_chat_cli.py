"""`p2bot chat` on a tiny random Llama with the real SmolLM2 tokenizer: watch mode, and a person at a terminal (a pty):
the ways out (/quit, Ctrl-D, Ctrl-C), a blank line, a reply cut at the token cap."""

import io
import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from launch.cli import main
from launch.commands.chat import Agent, ChatConfig, trim_cut_reply
from models.prompting.prompt import PromptFormatter
from tests.models.transmitter_fixtures import save_tiny_lm, tiny_transmitter

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp("tiny_policy"))


def test_watch_two_agents(tiny_policy, capsys):
    assert main(["chat", "--model", str(tiny_policy), "--exchanges", "2", "--max_new_tokens", "4",
                 "--persona_a", "I keep bees.", "I drink black coffee.", "--persona_b", "I teach chemistry."]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "  - I keep bees." in lines and "  - I teach chemistry." in lines
    spoken = [line[:2] for line in lines if line[:3] in ("A: ", "B: ")]
    assert spoken == ["A:", "B:", "A:", "B:"]


@pytest.mark.parametrize("text, trimmed", [
    ("I like the ca", "I like the …"),  # the last word may be cut: dropped
    ("I like cats, and", "I like cats, …"),
    ("I like cats.", "I like cats. …"),  # ends on punctuation: nothing cut
    ("Hello  ", "Hello …"),  # one word: kept
    ("", "…"),
])
def test_trim_cut_reply(text, trimmed):
    assert trim_cut_reply(text) == trimmed


def test_reply_is_trimmed_only_when_it_hit_the_cap(monkeypatch):
    transmitter = tiny_transmitter()
    formatter = PromptFormatter(transmitter.tokenizer)
    words = formatter.tokenizer.encode("I like the cats", add_special_tokens=False)
    agent = Agent(transmitter, formatter, ChatConfig(max_new_tokens=len(words)))
    generated = {"ids": words}
    monkeypatch.setattr("launch.commands.chat.generate", lambda *a, **k: [generated["ids"]])
    assert agent.reply(["i keep bees."], ["hi"]) == "I like the …"  # the cap reached, no end of turn
    generated["ids"] = [*words[:-1], formatter.end_token_id]  # as long, but ended by the model
    assert agent.reply(["i keep bees."], ["hi"]) == "I like the"


def test_ctrl_c_during_a_reply_is_one_line_and_exit_130(tiny_policy, monkeypatch, capsys):
    def interrupted(self, persona, history):
        raise KeyboardInterrupt

    monkeypatch.setattr(Agent, "reply", interrupted)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    assert main(["chat", "--model", str(tiny_policy), "--human"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "p2bot chat: interrupted" and "Traceback" not in err


def test_line_reader_splits_what_arrives_together_and_ends_at_eof():
    from launch.commands.chat import LineReader

    read, write = os.pipe()
    os.write(write, b"hi\nhow are you\n/qu")
    os.close(write)
    lines = LineReader(read)
    assert [lines.readline() for _ in range(4)] == ["hi\n", "how are you\n", "/qu", ""]
    os.close(read)


# --- a person at a terminal ---


class Terminal:
    """``p2bot chat --human`` in a child process whose controlling terminal is a pty (so Ctrl-C is a SIGINT)."""

    def __init__(self, model: Path, *options: str):
        argv = [sys.executable, "-m", "launch.cli", "chat", "--model", str(model), "--human", "--max_new_tokens", "4",
                "--persona_b", "I teach chemistry.", "I have two cats.", *options]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: only exec (never back into pytest)
            try:
                # as a shell gives a job in the foreground: a test run started in the background (``cmd &``) has
                # SIGINT ignored, and the child would inherit that
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.chdir(REPO)
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        self.buffer = ""

    def read_until(self, marker: str, timeout: float = 240.0) -> str:
        """Everything up to and including the next ``marker``."""
        deadline = time.time() + timeout
        while marker not in self.buffer:
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {marker!r}; got {self.buffer!r}")
            if not self._read():
                raise AssertionError(f"the chat ended before {marker!r}; got {self.buffer!r}")
        end = self.buffer.index(marker) + len(marker)
        text, self.buffer = self.buffer[:end], self.buffer[end:]
        return text

    def _read(self) -> bool:
        ready, _, _ = select.select([self.fd], [], [], 1.0)
        if ready:
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # the child closed the terminal
                return False
            if not data:
                return False
            self.buffer += data.decode(errors="replace")
        return True

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def exit_code(self, timeout: float = 60.0) -> tuple[int, str]:
        """The exit status and what the chat printed after the last read."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read() and select.select([self.fd], [], [], 0)[0]:
                    pass
                return os.waitstatus_to_exitcode(status), self.buffer
            self._read()
        raise AssertionError(f"the chat did not end; got {self.buffer!r}")

    def close(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.fixture()
def terminal(tiny_policy):
    sessions = []

    def start(*options: str) -> Terminal:
        sessions.append(Terminal(tiny_policy, *options))
        return sessions[-1]

    yield start
    for session in sessions:
        session.close()


def test_blank_line_reprompts_and_quit_ends(terminal):
    chat = terminal("--persona_a", "I keep bees.")
    banner = chat.read_until("you> ")
    assert "your persona:" in banner and "I keep bees." in banner  # --persona_a is the person's role
    assert "I teach chemistry." in banner and "/quit" in banner and "Ctrl-D" in banner
    chat.type(b"   \n")
    assert "bot>" not in chat.read_until("you> ")  # a line of spaces: asked again, nothing sent
    chat.type(b"hi, what do you teach?\n")
    turn = chat.read_until("you> ")
    assert "hi, what do you teach?" in turn  # the terminal echoes what was typed
    bot_line = next(line for line in turn.splitlines() if line.startswith("bot> "))
    assert bot_line.rstrip().endswith("…")  # 4 random tokens never reach an end of turn: cut and marked
    chat.type(b"/quit\n")
    assert chat.exit_code()[0] == 0


def test_ctrl_d_ends_with_a_newline(terminal):
    chat = terminal()
    chat.read_until("you> ")
    chat.type(b"\x04")
    code, rest = chat.exit_code()
    assert code == 0 and rest.startswith("\r\n")  # the shell's prompt is not left on the you> line


def test_ctrl_c_at_the_prompt_ends_without_a_traceback(terminal):
    chat = terminal()
    chat.read_until("you> ")
    chat.type(b"\x03")
    code, rest = chat.exit_code()
    assert code == 0 and "Traceback" not in rest and "KeyboardInterrupt" not in rest and rest.endswith("\n")
