"""A fork server for the kill tests: imports p2bot once, then runs each ``p2bot`` command in a forked child that
is SIGKILLed at a chosen moment.

Protocol (one JSON object per line): the test writes ``{"argv": [...], "log": path, "kill_op": name, "kill_at": n,
"after": bool, "kill_after_s": t}`` to stdin; the server answers ``@@ {"pid", "exit_code" | "signal", "seconds"}``
on stdout. A kill moment is either the n-th call of one file-system operation in the child (``fsync``,
``replace``, ``rmtree`` or ``exchange``, the atomic directory swap: the steps of a save), just before or just after
it runs, or a delay measured by the server. A child that finishes prints ``HARNESS_OPS <json counts>`` last.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

TIMEOUT_S = 120
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout, not whatever p2bot is installed


def _install_kill_hooks(kill_op: str | None, kill_at: int | None, after: bool) -> dict[str, int]:
    import data_prep.files.atomic

    counts: dict[str, int] = {}

    def wrap(owner, attr, name):
        real = getattr(owner, attr)

        def hooked(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            here = name == kill_op and counts[name] == kill_at
            if here and not after:
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(*args, **kwargs)
            if here and after:
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        setattr(owner, attr, hooked)

    for owner, attr, name in ((os, "fsync", "fsync"), (os, "replace", "replace"), (shutil, "rmtree", "rmtree"),
                              (data_prep.files.atomic, "_exchange", "exchange")):
        wrap(owner, attr, name)
    return counts


def _child(job: dict) -> None:
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import torch

    from launch.cli import main

    torch.set_num_threads(1)
    counts = _install_kill_hooks(job.get("kill_op"), job.get("kill_at"), bool(job.get("after")))
    try:
        rc = int(main(job["argv"]) or 0)
    except BaseException:  # noqa: BLE001  (report it in the log, exit non-zero)
        traceback.print_exc()
        rc = 1
    print(f"HARNESS_OPS {json.dumps(counts, sort_keys=True)}", flush=True)
    sys.stderr.flush()
    os._exit(rc)


def _wait(pid: int, kill_after_s: float | None) -> dict:
    start = time.monotonic()
    deadline = start + (kill_after_s if kill_after_s is not None else TIMEOUT_S)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.005)
    out = {"pid": pid, "seconds": time.monotonic() - start}
    if os.WIFSIGNALED(status):
        out["signal"] = os.WTERMSIG(status)
    else:
        out["exit_code"] = os.WEXITSTATUS(status)
    return out


def serve() -> None:
    import launch.cli  # noqa: F401  (the slow imports, done once: torch, transformers, trl, accelerate, deepspeed)
    import launch.commands.receiver  # noqa: F401
    import launch.commands.rl  # noqa: F401

    print("@@ ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(job)
        print("@@ " + json.dumps(_wait(pid, job.get("kill_after_s"))), flush=True)


if __name__ == "__main__":
    serve()
