"""`safecritic/HopperVelocity-v0`: gymnasium's Hopper-v5 under Safety-Gymnasium's velocity limit.

Cost 1 on every step after which the torso's x-velocity (observation 5) exceeds the limit
(0.7402 m/s; the same rule as the `hopper_velocity` labeler); the cost does
not end the episode, a fall does (Hopper's own termination). The release criterion is the
episode's summed cost against a budget (DSRL: normalised cost = cost / budget, safe when
<= 1), so no step is an `accident`, and the task reports no `success`. Spaces, frame skip
and the 1000-step limit are Hopper-v5's, so Minari's hopper datasets fit it too (with the
`hopper_velocity` labeler).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

from safecritic.envs.hopper import hopper_velocity

MAX_STEPS = 1000


class HopperVelocityEnv(HopperEnv):
    """Hopper-v5 with `cost` (and `accident`: never) in the info of reset and of every step."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return obs, {**info, "cost": 0.0, "accident": False}

    def step(self, action):
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        if act.shape != self.action_space.shape or not np.all(np.isfinite(act)):
            raise ValueError(f"HopperVelocity action must be finite with shape {self.action_space.shape}, got {action!r}")
        obs, reward, terminated, truncated, info = super().step(np.clip(act, -1.0, 1.0))
        cost = float(hopper_velocity(None, None, obs.reshape(1, -1))[0])  # the labeler's rule: one definition
        return obs, reward, terminated, truncated, {**info, "cost": cost, "accident": False}
