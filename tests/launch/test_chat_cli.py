"""`p2bot chat` on a tiny random Llama with the real SmolLM2 tokenizer: watch mode, and a human under a pty."""

import os
import pty
import select
import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from launch.cli import main
from models.loading.embedded import embedded_policy_path


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    tok = AutoTokenizer.from_pretrained(embedded_policy_path())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    path = tmp_path_factory.mktemp("tiny_policy")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_watch_two_agents(tiny_policy, capsys):
    assert main(["chat", "--model_name_or_path", str(tiny_policy), "--exchanges", "2", "--max_new_tokens", "4",
                 "--persona_a", "I keep bees.", "I drink black coffee.", "--persona_b", "I teach chemistry."]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "  - I keep bees." in lines and "  - I teach chemistry." in lines
    spoken = [line[:2] for line in lines if line[:3] in ("A: ", "B: ")]
    assert spoken == ["A:", "B:", "A:", "B:"]


def _read_until(fd: int, marker: str, buffer: list[str], timeout: float = 240.0) -> str:
    deadline = time.time() + timeout
    while marker not in "".join(buffer):
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {marker!r}; got {''.join(buffer)!r}")
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                buffer.append(os.read(fd, 4096).decode(errors="replace"))
            except OSError:
                break
    text = "".join(buffer)
    buffer.clear()
    return text


def test_human_chat_under_a_pseudo_terminal(tiny_policy):
    primary, secondary = pty.openpty()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "launch.cli", "chat", "--model_name_or_path", str(tiny_policy), "--human",
         "--max_new_tokens", "4", "--persona_b", "I teach chemistry.", "I have two cats."],
        stdin=secondary, stdout=secondary, stderr=subprocess.DEVNULL, env=env, close_fds=True,
    )
    os.close(secondary)
    buf: list[str] = []
    try:
        first = _read_until(primary, "you> ", buf)
        assert "I teach chemistry." in first
        os.write(primary, b"hi, what do you teach?\n")
        second = _read_until(primary, "you> ", buf)
        assert "hi, what do you teach?" in second  # the terminal echoes what was typed
        assert "bot> " in second
        os.write(primary, b"/quit\n")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
