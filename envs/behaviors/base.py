"""The behaviour-policy interface: observation in, action out, randomness from a generator."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Behavior(Protocol):
    """A scripted data-collection policy. `reset` starts an episode with its own RNG."""

    name: str

    def reset(self, rng: np.random.Generator) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Action in the env's action space (float32)."""
