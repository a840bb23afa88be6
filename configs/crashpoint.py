"""A test hook: `SAFECRITIC_CRASH_AT=<point>` makes the process kill -9 itself at that named point.

It lets tests and bench/adversarial.py kill a real `safecritic` process at an exact place (a
training step, between a temp file and its rename, between collecting and publishing a dataset)
with no sleeps and no races, and then check that the next command finds nothing corrupt and ends
where an uninterrupted run ends. Unset, as everywhere but there, a point costs one comparison.
"""

from __future__ import annotations

import os
import signal

ENV = "SAFECRITIC_CRASH_AT"
_AT = os.environ.get(ENV) or None  # read once: the hot loop must not look up the environment


def crash_point(*parts: object) -> None:
    """SIGKILL this process if `':'.join(parts)` is the armed point (e.g. 'train:critic:22')."""
    if _AT is not None and ":".join(str(p) for p in parts) == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
