"""Crash-safe files: every write goes to a temporary name, is fsynced, then renamed into place.

A SIGKILL or power cut at any moment leaves either the old complete file/directory or the new complete one, never
a mix and never nothing: files and directories are fsynced before each rename and the parent directory after it,
and a directory that already exists is swapped with its replacement in one ``renameat2(RENAME_EXCHANGE)`` call
(Linux). Where that call is unavailable the old directory is first renamed aside to ``.<name>.old``, a name
:func:`recover_dir` moves back if the process died between the two renames.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def fsync_path(path: str | os.PathLike) -> None:
    """Flush one file or directory to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """Flush every file under ``root`` and every directory entry (``root`` included) to disk."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), f"{a} <-> {b}")


def aside_name(target: str | os.PathLike) -> Path:
    """Where :func:`replace_dir` parks the old ``target`` on systems without an atomic exchange."""
    target = Path(target)
    return target.with_name(f".{target.name}.old")


def replace_dir(src: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move the finished directory ``src`` to ``target``, replacing what is there, with no moment without either.

    ``src`` is fsynced first; the replaced directory is deleted afterwards. Both must be on one file system.
    """
    src, target = Path(src), Path(target)
    fsync_tree(src)
    if target.exists() and _exchange(src, target):
        shutil.rmtree(src, ignore_errors=True)  # src now holds the old copy
    elif target.exists():
        old = aside_name(target)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(src, target)
        fsync_path(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, target)
    fsync_path(target.parent)
    return target


def recover_dir(target: str | os.PathLike) -> bool:
    """Put back an old copy that a crash in :func:`replace_dir`'s fallback left aside; True if it did."""
    target, old = Path(target), aside_name(target)
    if not target.exists() and old.is_dir():
        os.replace(old, target)
        fsync_path(target.parent)
        return True
    if target.exists() and old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return False


def temp_dir_for(target: str | os.PathLike) -> Path:
    """A fresh hidden directory beside ``target`` (same file system, so the final rename is atomic)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp", dir=target.parent))
    tmp.chmod(0o755)
    return tmp


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a fsynced temporary file and a rename."""
    return write_bytes_atomic(path, text.encode("utf-8"))
