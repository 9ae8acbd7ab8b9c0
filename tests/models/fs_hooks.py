"""Test helper: run a check before and after every file-system step of a save (the moments a kill can land)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from data_prep.files import atomic


def check_around_fs_ops(monkeypatch, check: Callable[[], None]) -> None:
    """Call ``check()`` before and after each ``os.replace``, ``os.fsync``, ``shutil.rmtree`` and atomic exchange."""
    def hooked(real):
        def run(*args, **kwargs):
            check()
            out = real(*args, **kwargs)
            check()
            return out
        return run

    for owner, name in ((os, "replace"), (os, "fsync"), (atomic, "_exchange"), (shutil, "rmtree")):
        monkeypatch.setattr(owner, name, hooked(getattr(owner, name)))
