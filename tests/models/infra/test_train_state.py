import json
import random

import numpy as np
import pytest
import torch
from transformers import get_scheduler

from models.infra.train_state import (
    RNG_FILE,
    SCHEDULER_FILE,
    load_rng_state,
    load_scheduler,
    save_rng_state,
    save_scheduler,
)


def _draws():
    return random.random(), float(np.random.normal()), np.random.randint(0, 10**9), torch.rand(3)


def test_rng_state_round_trip_is_exact(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached Gaussian in NumPy's state
    save_rng_state(tmp_path, rank=1)
    expected = _draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    load_rng_state(tmp_path, rank=1)
    got = _draws()
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])
    with pytest.raises(FileNotFoundError, match=RNG_FILE.format(rank=0)):
        load_rng_state(tmp_path, rank=0)


def test_scheduler_state_is_json_and_resumes_the_schedule(tmp_path):
    def make():
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
        return opt, get_scheduler("linear", opt, num_warmup_steps=2, num_training_steps=10)

    opt, sched = make()
    for _ in range(4):
        opt.step()
        sched.step()
    save_scheduler(sched, tmp_path)
    assert json.loads((tmp_path / SCHEDULER_FILE).read_text())["last_epoch"] == 4
    expected = []
    for _ in range(3):
        opt.step()
        sched.step()
        expected.append(sched.get_last_lr()[0])
    opt2, sched2 = make()
    load_scheduler(sched2, tmp_path)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]  # what the optimizer state restores in a checkpoint
    got = []
    for _ in range(3):
        opt2.step()
        sched2.step()
        got.append(sched2.get_last_lr()[0])
    assert got == expected and got[0] != got[1]
    with pytest.raises(FileNotFoundError, match=SCHEDULER_FILE):
        load_scheduler(sched2, tmp_path / "missing")
