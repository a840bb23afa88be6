"""An exclusive lock per run folder or dataset, so two processes never write the same one at once.

`fcntl.flock` on a small hidden lock file beside the folder (`runs/.smoke.lock` for `runs/smoke`:
a command refused before it trains leaves no empty run folder behind): the kernel drops the lock when its holder exits, however it
exits (kill -9 included), so a lock left by a dead process never blocks anyone and there is no
stale-lock cleanup to get wrong. The file's text only says who holds it, for the refusal message.
The file is never deleted: unlinking it would let a third process lock a new file while a second
still waits on the old one. Re-entrant within a process (`safecritic run` locks the run folder,
then its training stage locks it again).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from safecritic.configs.errors import RunError, SafecriticError

_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth


def ensure_folder(folder: Path, what: str, error: type[SafecriticError] = RunError) -> Path:
    """Create `folder` (and its parents), or say plainly why it cannot be one (`what` names it for the user)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise error(f"{what}: {folder} cannot be created, {blocker} is a file; choose another path") from None
    except PermissionError:
        raise error(f"{what}: {folder} cannot be created (permission denied); choose a folder you can write") from None
    return folder


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "a process that has not written its name yet"


@contextlib.contextmanager
def exclusive(lock_file: Path, what: str, hint: str, error: type[SafecriticError] = RunError) -> Iterator[None]:
    """Hold `lock_file` for the block; `error` naming the holder if another process has it."""
    ensure_folder(lock_file.parent, what, error)
    key = lock_file.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise error(f"{what} is in use by another safecritic process ({_holder(key)}): two writers would corrupt "
                    f"it. Wait for that process to finish, or stop it; {hint}") from None
    try:
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, `{' '.join(sys.argv)}`, since {stamp}\n".encode())
        _held[key] = 1
        yield
    finally:
        _held.pop(key, None)
        os.close(fd)  # releases the lock


def lock_file_of(folder: Path) -> Path:
    """The lock file of `folder`: a hidden sibling, `<parent>/.<name>.lock`."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


def run_lock(run_dir: Path) -> contextlib.AbstractContextManager[None]:
    """The lock of one run folder (training writes it; `safecritic run` holds it for every stage)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} is a file, not a folder; choose another --run-dir (or -o run.name=...)")
    return exclusive(lock_file_of(run_dir), f"run folder {run_dir}",
                     "or train into another folder (--run-dir, or -o run.name=...)")
