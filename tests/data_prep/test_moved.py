import importlib
import json
import subprocess
import sys

import pytest

from data_prep.moved import MOVED


def test_every_old_module_path_imports_and_warns_once():
    """In a fresh interpreter, each old path imports (as its new module) with one DeprecationWarning naming both."""
    code = ("import importlib, json, sys, warnings\n"
            "from data_prep.moved import MOVED\n"
            "out = {}\n"
            "for old, new in MOVED.items():\n"
            "    with warnings.catch_warnings(record=True) as seen:\n"
            "        warnings.simplefilter('always')\n"
            "        mod = importlib.import_module(old)\n"
            "    out[old] = [mod.__name__, [str(w.message) for w in seen if w.category is DeprecationWarning]]\n"
            "print(json.dumps(out))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert set(out) == set(MOVED)
    for old, (name, warned) in out.items():
        assert name == MOVED[old]
        assert f"{old} moved to {MOVED[old]}; import it from there" in warned


def test_the_old_path_gives_the_same_module_object():
    with pytest.warns(DeprecationWarning, match="models.transmitter moved"):
        old = importlib.import_module("models.transmitter")
    new = importlib.import_module("models.networks.transmitter")
    assert old is new and old.Transmitter is new.Transmitter


def test_every_target_exists_and_no_old_path_is_a_file():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for old, new in MOVED.items():
        assert (root / (new.replace(".", "/") + ".py")).is_file(), new
        assert not (root / (old.replace(".", "/") + ".py")).exists(), f"{old} exists again beside its alias"
