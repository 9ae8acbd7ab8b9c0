"""Kill tests: ``p2bot rl`` and ``p2bot receiver`` runs are SIGKILLed at seeded random moments, many of them inside a
checkpoint save, and resumed each time. Every resume must start from the newest complete checkpoint on disk, and the
run, once finished, must hold exactly the state (weights, optimizer, scheduler, RNG, step, logs) of a run that was
never interrupted. Children are forked from one server process (``kill_harness.py``) so that the heavy imports are
paid once.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "rl"))
from data_prep import PersonaDialogue, write_jsonl  # noqa: E402
from tests.rl.rl_fixtures import load_smollm2_tokenizer  # noqa: E402

SEEDS = (0, 1, 2)
KILLS_PER_SEED = 3


class Harness:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("kill_harness.py"))], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._reply()

    def _reply(self) -> str:
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                return line[3:].strip()
        raise RuntimeError("kill harness exited")

    def run(self, argv: list[str], log: Path, **kill) -> dict:
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log), **kill}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._reply())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    yield h
    h.close()


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """A 1-layer, 16-wide random Llama over the real SmolLM2 tokenizer (checkpoints of ~25 MB: fast saves)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_smollm2_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=False, initializer_range=0.1)
    path = tmp_path_factory.mktemp("kill_policy")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def receiver_data(tmp_path_factory):
    words = ["hiking", "chess", "jazz", "baking", "surfing", "painting", "fishing", "gardening", "poetry", "karate",
             "cycling", "pottery"]
    dialogues = [PersonaDialogue([f"i love {w}.", f"i am {20 + i} years old."],
                                 [f"i enjoy {words[(i + 5) % 12]}.", f"i live in town {i}."],
                                 [f"{w} is my passion", "nice", f"i am {20 + i}"], dialogue_id=f"k{i}")
                 for i, w in enumerate(words)]
    path = tmp_path_factory.mktemp("kill_data") / "dialogues.jsonl"
    write_jsonl(dialogues, path)
    return path


def rl_argv(policy: Path, out: Path) -> list[str]:
    return ["rl", "--model_name_or_path", str(policy), "--output_dir", str(out), "--max_steps", "4", "--save_steps", "1",
            "--save_total_limit", "2", "--reward_funcs", str(REPO / "tests" / "rl" / "toy_rewards.py") + ":letter_e",
            "--pairs_per_step", "1", "--rollouts_per_pair", "2", "--response_length", "6", "--max_exchanges", "1",
            "--disable_tqdm", "true", "--num_ppo_epochs", "2", "--learning_rate", "1e-2", "--adaptive_kl", "true",
            "--target_kl", "0.01", "--kl_horizon", "10", "--sample_log_steps", "1", "--resume_from_checkpoint", "latest"]


def receiver_argv(encoder: Path, data: Path, out: Path) -> list[str]:
    return ["receiver", "--data", str(data), "--eval_fraction", "0.25", "--num_eval_negatives", "3",
            "--model_name_or_path", str(encoder), "--output_dir", str(out), "--per_device_train_batch_size", "4",
            "--max_steps", "5", "--save_steps", "1", "--logging_steps", "1", "--eval_steps", "2", "--use_cpu", "true",
            "--skip_baselines", "true", "--resume", "true"]


def rl_latest(out: Path) -> int:
    """The newest complete RL checkpoint on disk (0: none)."""
    steps = [int(m.group(1)) for p in out.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return max(steps, default=0)


def receiver_latest(out: Path) -> int:
    state = out / "checkpoint" / "trainer_state.json"
    return json.loads(state.read_text())["step"] if state.is_file() else 0


def resumed_step(log: Path, run_index: int) -> int | None:
    """The step the ``run_index``-th command in ``log`` said it resumed from (0: it started afresh; None: it was
    killed before it got that far)."""
    text = log.read_text().split("HARNESS_OPS")[run_index]
    if m := re.search(r"resumed from \S+ at step (\d+)", text):
        return int(m.group(1))
    return 0 if "starting from step 0" in text else None


def ops_of(log: Path) -> dict[str, int]:
    """Calls of each hooked file-system operation in the last finished command of ``log``."""
    return json.loads(re.findall(r"HARNESS_OPS (\{.*\})", log.read_text())[-1])


def kill_plan(rng: random.Random, ops: dict[str, int], left: float, seconds: float) -> dict:
    """A seeded moment in a run with ``left`` of the reference run's work to do (``ops`` calls per operation,
    ``seconds``): the n-th call of one operation (just before or just after it), or a delay."""
    if rng.random() < 0.75:
        op = rng.choice(sorted(ops))
        return {"kill_op": op, "kill_at": rng.randint(1, max(1, int(ops[op] * left))), "after": rng.random() < 0.5}
    return {"kill_after_s": rng.uniform(0.05, 0.5) * seconds * left}


def reference_run(harness, make_argv, tmp_path: Path) -> dict:
    """Two uninterrupted runs (``tmp_path/reference`` is kept to compare against): the file-system operations of
    one, and the shorter of the two wall times, so that a slow first run (cold caches, a busy machine) does not
    place the timed kills past the end of later, faster runs (a kill that misses ends its seed's kills early)."""
    runs = []
    for name in ("reference", "reference-again"):
        status = harness.run(make_argv(tmp_path / name), tmp_path / f"{name}.log")
        assert status.get("exit_code") == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        runs.append(status["seconds"])
    return {"ops": ops_of(tmp_path / "reference.log"), "seconds": min(runs)}


def run_with_kills(harness, argv, out: Path, latest, seed: int, reference: dict, max_steps: int) -> int:
    """Kill and resume ``argv`` ``KILLS_PER_SEED`` times, then run it to the end; returns the kills that landed.

    ``reference``: ``ops`` and ``seconds`` of an uninterrupted run (scaled to the steps a resume has left).
    """
    rng, log, landed, floor = random.Random(seed), out.parent / f"{out.name}.log", 0, 0
    for i in range(KILLS_PER_SEED + 1):
        expected = latest(out)  # what a resume must start from: the newest complete checkpoint
        assert expected >= floor, f"seed {seed}: a kill lost checkpoint {floor} (newest left: {expected})"
        floor = expected
        left = (max_steps - expected) / max_steps
        plan = kill_plan(rng, reference["ops"], left, reference["seconds"]) if i < KILLS_PER_SEED else {}
        with log.open("a") as f:
            f.write(f"\nKILL PLAN {plan}\n")
        status = harness.run(argv, log, **plan)
        if "signal" in status:  # killed before it could print its own last line
            with log.open("a") as f:
                f.write("\nHARNESS_OPS {}\n")
        start = resumed_step(log, i)
        if status.get("signal") == signal.SIGKILL:
            landed += 1
            assert start in (expected, None), f"seed {seed}, run {i}: resumed from {start}, not {expected}"
        else:
            assert start == expected, f"seed {seed}, run {i}: resumed from {start}, not {expected}"
            assert status.get("exit_code") == 0, log.read_text()[-3000:]
            if i < KILLS_PER_SEED:  # the kill moment lay past the end of this run: nothing left to kill
                break
    return landed


def assert_same_files(a: Path, b: Path, skip=("README.md", "random_states_0.pkl"), skip_keys=()) -> None:
    """Same file names; same tensors, JSON (minus ``skip_keys``) and torch-saved state in each."""
    names_a = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file() and p.name not in skip)
    assert names_a == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file() and p.name not in skip)
    for name in names_a:
        fa, fb = a / name, b / name
        if name.endswith(".safetensors"):
            ta, tb = load_file(fa), load_file(fb)
            assert ta.keys() == tb.keys(), name
            for k in ta:
                assert torch.equal(ta[k], tb[k]), f"{name}:{k}"
        elif name.endswith(".json"):
            ja, jb = json.loads(fa.read_text()), json.loads(fb.read_text())
            for key in skip_keys:
                ja.pop(key, None), jb.pop(key, None)
            assert ja == jb, name
        elif name.endswith(".bin"):
            assert_same_tree(torch.load(fa, weights_only=True), torch.load(fb, weights_only=True), name)
        else:
            assert fa.read_bytes() == fb.read_bytes(), name


def assert_same_tree(x, y, where: str) -> None:
    if isinstance(x, torch.Tensor):
        assert torch.equal(x, y), where
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            assert_same_tree(x[k], y[k], f"{where}/{k}")
    elif isinstance(x, list | tuple):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            assert_same_tree(u, v, f"{where}[{i}]")
    else:
        assert x == y, where


def log_rows(path: Path, drop_prefix: str = "time/") -> list[dict]:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(drop_prefix)} for r in rows]


def test_rl_survives_sigkill_anywhere_and_resumes_exactly(harness, tiny_policy, tmp_path):
    ref = tmp_path / "reference"
    reference = reference_run(harness, lambda out: rl_argv(tiny_policy, out), tmp_path)
    landed = 0
    for seed in SEEDS:
        out = tmp_path / f"seed{seed}"
        landed += run_with_kills(harness, rl_argv(tiny_policy, out), out, rl_latest, seed, reference, max_steps=4)
        assert_same_files(ref / "checkpoint-4", out / "checkpoint-4", skip_keys=("metrics_offset", "samples_offset"))
        assert log_rows(out / "metrics.jsonl") == log_rows(ref / "metrics.jsonl")  # each step once, same values
        assert (out / "samples.txt").read_text() == (ref / "samples.txt").read_text()
    assert [r["step"] for r in log_rows(ref / "metrics.jsonl")] == [0, 1, 2, 3]
    assert landed >= len(SEEDS) * KILLS_PER_SEED - 2, f"only {landed} kills landed"


def test_receiver_survives_sigkill_anywhere_and_resumes_exactly(harness, tiny_receiver_dir, receiver_data, tmp_path):
    ref = tmp_path / "reference"
    reference = reference_run(harness, lambda out: receiver_argv(tiny_receiver_dir, receiver_data, out), tmp_path)
    landed = 0
    for seed in SEEDS:
        out = tmp_path / f"seed{seed}"
        argv = receiver_argv(tiny_receiver_dir, receiver_data, out)
        landed += run_with_kills(harness, argv, out, receiver_latest, 100 + seed, reference, max_steps=5)
        assert_same_files(ref / "checkpoint", out / "checkpoint", skip_keys=("log_offset", "config"))
        assert_same_files(ref / "model", out / "model")
        assert log_rows(out / "log.jsonl") == log_rows(ref / "log.jsonl")
    steps = [r["step"] for r in log_rows(ref / "log.jsonl") if "loss/total" in r]
    assert steps == [1, 2, 3, 4, 5]
    assert landed >= len(SEEDS) * KILLS_PER_SEED - 2, f"only {landed} kills landed"
