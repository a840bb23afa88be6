"""PyBullet, imported and connected quietly: the helpers every PyBullet task shares."""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_c_output() -> Iterator[None]:
    """PyBullet's C code prints a banner on import and connect; keep the terminal clean.

    Python exceptions are unaffected (they are raised, not printed, in here).
    """
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers the banner: flush it into devnull
        for fd, saved_fd in zip((1, 2), saved):
            os.dup2(saved_fd, fd)
            os.close(saved_fd)


with quiet_c_output():
    import pybullet
    from pybullet_utils import bullet_client


def direct_client() -> "bullet_client.BulletClient":
    """A headless (DIRECT) client of its own, connected without the banner."""
    with quiet_c_output():
        return bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
