"""The random walk behaviour every task's data needs: a random command held for a few steps.

Temporally correlated on purpose (like Ornstein-Uhlenbeck exploration): i.i.d. uniform
actions jitter in place near the start and never reach a hazard, while a walk roams the
workspace and runs into what it must not touch at every speed and angle. That is the
"what not to do" an accident critic needs beyond a reckless driver's full-speed crashes
(docs/design.md, "The data"). A task supplies only how a direction is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RandomWalk:
    """Throttle x a unit direction, held for `hold` steps (uniform in [lo, hi)), then another."""

    dim: int
    throttle: tuple[float, float]
    hold: tuple[int, int] = (4, 16)
    name: str = "random"
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)
    _left: int = 0
    _action: np.ndarray | None = field(default=None, repr=False)

    def reset(self, rng: np.random.Generator) -> None:
        self._rng, self._left = rng, 0
        self._action = np.zeros(self.dim, dtype=np.float32)

    def direction(self, rng: np.random.Generator) -> np.ndarray:
        """A unit vector, uniform on the sphere (a task may draw it otherwise)."""
        d = rng.normal(size=self.dim)
        return d / max(float(np.linalg.norm(d)), 1e-9)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._left <= 0:
            direction = self.direction(self._rng)
            self._action = np.clip(self._rng.uniform(*self.throttle) * direction, -1.0, 1.0).astype(np.float32)
            self._left = int(self._rng.integers(*self.hold))
        self._left -= 1
        return self._action.copy()
