"""Atomic file writes: a temp file in the same folder, fsync, then one rename.

A crash mid-write leaves the old file intact, never a truncated one. A kill -9 does leave the
temp file; its name carries the writer's host and pid, so the next write of the same path
deletes the ones whose writer is gone. Lives in configs, the bottom layer, because every layer
writes artifacts.
"""

from __future__ import annotations

import io
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from safecritic.configs.crashpoint import crash_point


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def writer_tag() -> str:
    """`<host>.<pid>`: goes into the names of temp files and folders, for `left_by_dead_writer`."""
    return f"{socket.gethostname()}.{os.getpid()}"


def left_by_dead_writer(name: str, prefix: str) -> bool:
    """Whether `name` (= prefix + writer_tag() + '.' + ...) was left by a process of this host that is gone."""
    host = socket.gethostname()
    rest = name[len(prefix):]
    if not name.startswith(prefix) or not rest.startswith(host + "."):
        return False
    pid = rest[len(host) + 1:].split(".", 1)[0]
    return pid.isdigit() and not pid_alive(int(pid))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{prefix}*.tmp"):
        if left_by_dead_writer(stale.name, prefix):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{prefix}{writer_tag()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        crash_point("write", path.name)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())
