"""Cost labelers: per-transition cost for datasets that were recorded without one.

A labeler maps (obs, act, next_obs) arrays of shape (N, ...) to costs in [0, 1] of
shape (N,). Numpy only, so configs can validate names cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from safecritic.envs.pointnav.task import PointNavParams

LabelFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Labeler:
    """A cost function and the observation size it is defined for."""

    fn: LabelFn
    obs_dim: int
    what: str

    def __call__(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return self.fn(obs, act, next_obs)


# Safety-Gymnasium (v1) velocity threshold for Hopper, in m/s (REFERENCES.md).
HOPPER_VELOCITY_LIMIT = 0.7402
# Gymnasium Hopper-v5 observation: qpos[1:] (5 entries) then qvel; index 5 is the torso x-velocity.
HOPPER_X_VELOCITY_INDEX = 5


def hopper_velocity(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """cost = 1 when the torso's signed x-velocity after the step exceeds the limit."""
    return (next_obs[:, HOPPER_X_VELOCITY_INDEX] > HOPPER_VELOCITY_LIMIT).astype(np.float32)


def pointnav_hazard(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """cost = 1 when the agent touches a hazard after the step (PointNav's own cost)."""
    p = PointNavParams()
    rel = next_obs[:, 6 : 6 + 2 * p.n_hazards].reshape(len(next_obs), p.n_hazards, 2)
    touching = np.linalg.norm(rel, axis=-1) < p.hazard_radius + p.agent_radius
    return touching.any(axis=1).astype(np.float32)


LABELERS: dict[str, Labeler] = {
    "hopper_velocity": Labeler(hopper_velocity, 11, "Hopper-v5 torso x-velocity > 0.7402 m/s"),
    "pointnav_hazard": Labeler(pointnav_hazard, PointNavParams().obs_dim, "PointNav hazard contact"),
}
