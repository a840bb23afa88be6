"""Hopper under Safety-Gymnasium's velocity limit: the task `safecritic/HopperVelocity-v0`
(envs/hopper/env.py) and its behaviours (envs/hopper/behaviors.py), and the same cost as a
labeler for Minari's hopper datasets (e.g. `mujoco/hopper/medium-v0`), recorded without one."""

from __future__ import annotations

import numpy as np

from safecritic.envs.hopper.behaviors import HOPPER_BEHAVIORS
from safecritic.envs.task import Labeler, Task

# Safety-Gymnasium (v1) velocity threshold for Hopper, in m/s (REFERENCES.md).
HOPPER_VELOCITY_LIMIT = 0.7402
# Hopper-v5 observation: qpos[1:] (5 entries) then qvel; index 5 is the torso x-velocity.
HOPPER_X_VELOCITY_INDEX = 5
HOPPER_OBS_DIM = 11


def hopper_velocity(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """cost = 1 when the torso's signed x-velocity after the step exceeds the limit."""
    return (next_obs[:, HOPPER_X_VELOCITY_INDEX] > HOPPER_VELOCITY_LIMIT).astype(np.float32)


TASK = Task(
    name="hopper",
    behaviors=HOPPER_BEHAVIORS,
    labelers={"hopper_velocity": Labeler(hopper_velocity, HOPPER_OBS_DIM, "Hopper-v5 torso x-velocity > 0.7402 m/s")},
)
