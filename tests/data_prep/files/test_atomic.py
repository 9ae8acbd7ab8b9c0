import os
import shutil
from pathlib import Path

import pytest
import torch

from data_prep.files import atomic
from data_prep.files.atomic import aside_name, recover_dir, replace_dir, write_text_atomic


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _make(path: Path, tag: str) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "a.txt").write_text(f"a-{tag}")
    (path / "sub" / "b.txt").write_text(f"b-{tag}")
    return path


@pytest.fixture()
def fs_log(monkeypatch):
    """Records every fsync, rename and exchange, and calls ``check`` before and after each."""
    events, checks = [], []
    real_fsync, real_replace, real_exchange = os.fsync, os.replace, atomic._exchange

    def run_checks():
        for check in checks:
            check()

    def fsync(fd):
        real_fsync(fd)
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def replace(src, dst):
        run_checks()
        events.append(("rename", str(Path(src).resolve()), str(Path(dst).resolve())))
        real_replace(src, dst)
        run_checks()

    def exchange(a, b):
        run_checks()
        events.append(("rename", str(Path(a).resolve()), str(Path(b).resolve())))
        done = real_exchange(a, b)
        run_checks()
        return done

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(atomic, "_exchange", exchange)
    return events, checks


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_dir_always_leaves_a_complete_copy(tmp_path, fs_log, monkeypatch, exchange):
    events, checks = fs_log
    if not exchange:  # the fallback: rename aside, rename in, delete
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    target = _make(tmp_path / "ckpt", "old")
    old, new = _tree(target), _tree(_make(tmp_path / "new", "new"))

    def complete():  # at every rename: the target, or (fallback) its aside copy, is a whole old or new tree
        where = target if target.exists() else aside_name(target)
        assert _tree(where) in (old, new), where

    checks.append(complete)
    src = tmp_path / "new"
    files = {str(p.resolve()) for p in src.rglob("*")} | {str(src.resolve())}
    replace_dir(src, target)
    assert _tree(target) == new and not src.exists() and not aside_name(target).exists()
    moved = next(i for i, e in enumerate(events) if e[0] == "rename" and e[1] == str(src.resolve()))
    assert files <= {e[1] for e in events[:moved] if e[0] == "fsync"}  # all of the new copy flushed before it moved
    assert events[-1] == ("fsync", str(tmp_path.resolve()))  # and the directory entry after


def test_a_crash_inside_the_fallback_swap_is_recovered(tmp_path, monkeypatch):
    target = _make(tmp_path / "ckpt", "old")
    old = _tree(target)
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the old copy is aside, the new one not yet in place
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        replace_dir(_make(tmp_path / "new", "new"), target)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not target.exists() and aside_name(target).is_dir()
    assert recover_dir(target) and _tree(target) == old and not aside_name(target).exists()
    assert not recover_dir(target)  # nothing to do the second time


def test_write_text_atomic_fsyncs_before_the_rename(tmp_path, fs_log):
    events, checks = fs_log
    path = tmp_path / "d" / "state.json"
    checks.append(lambda: not path.exists() or path.read_text() in ("old", "new") or pytest.fail(path.read_text()))
    write_text_atomic(path, "old")
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["state.json"]
    renames = [i for i, e in enumerate(events) if e[0] == "rename"]
    for i in renames:  # the temp file was fsynced just before it was renamed, the directory after
        src = events[i][1]
        assert ("fsync", src) in events[:i]
        assert events[i + 1] == ("fsync", str(path.parent.resolve()))


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = write_text_atomic(tmp_path / "x.txt", "old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_replace_dir_into_a_new_place(tmp_path):
    src = _make(tmp_path / "src", "x")
    out = replace_dir(src, tmp_path / "dst")
    assert _tree(out) == {"a.txt": "a-x", "sub/b.txt": "b-x"} and not src.exists()
    shutil.rmtree(out)


def test_transmitter_save_never_removes_the_saved_model(tmp_path, monkeypatch):
    """Re-saving over a Transmitter: at every rename, fsync and delete the old or the new model is whole in place,
    and a save that fails half-way leaves the old one untouched."""
    from safetensors.torch import load_file

    from models.networks import transmitter as transmitter_mod
    from models.networks.transmitter import HEADS_FILE, META_FILE
    from tests.models.fs_hooks import check_around_fs_ops
    from tests.models.transmitter_fixtures import tiny_transmitter

    target = tmp_path / "model"
    old, new = tiny_transmitter(seed=0), tiny_transmitter(seed=1)
    with torch.no_grad():
        new.nup_head.weight.add_(1.0)  # heads start from one fixed init: make the two models tell apart
    old.save_pretrained(target)
    old_head, seen = old.nup_head.weight.detach().clone(), []

    def whole():
        assert {p.name for p in target.iterdir()} >= {META_FILE, HEADS_FILE, "model.safetensors", "config.json", "README.md"}
        head = load_file(str(target / HEADS_FILE))["nup_head.weight"]
        seen.append("old" if torch.equal(head, old_head) else "new")

    check_around_fs_ops(monkeypatch, whole)
    new.save_pretrained(target)
    monkeypatch.undo()
    assert seen[0] == "old" and seen[-1] == "new" and len(seen) > 10
    assert torch.equal(load_file(str(target / HEADS_FILE))["nup_head.weight"], new.nup_head.weight.detach())

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(transmitter_mod, "save_file", disk_full)
    with pytest.raises(OSError, match="disk full"):
        old.save_pretrained(target)
    assert torch.equal(load_file(str(target / HEADS_FILE))["nup_head.weight"], new.nup_head.weight.detach())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp directory left behind
