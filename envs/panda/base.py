"""PandaReach as a gymnasium env, independent of the physics engine.

Subclasses only supply an `ArmSim`; spaces, control period, episode length, reward,
cost, reset sampling, the controller and the observation are defined here once
(DESIGN.md: identical twins). Observation layout: envs/panda/task.py.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from safecritic.envs.task import safety_info
from safecritic.envs.panda.control import advance_reference, joint_velocity, servo_torque
from safecritic.envs.panda.task import (
    PandaLayout,
    PandaReachParams,
    action_space,
    observation_space,
    observe,
    outcome,
    sample_layout,
)
from safecritic.envs.panda.urdf import panda_model


class ArmSim(Protocol):
    """What an engine must do: hold the scene, step the arm under torques, report contacts.

    `measure` reads the current state; `ee_pose` and `jacobian` are valid after it."""

    def reset(self, q: np.ndarray, layout: PandaLayout) -> None: ...

    def measure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(q, dq, bias, mass): joint angles, velocities, gravity + Coriolis torques (7,) and the
        joint-space mass matrix (7, 7)."""

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (position (3,), rotation matrix (3, 3)) in the world."""

    def jacobian(self) -> np.ndarray:
        """(6, 7): linear rows, then angular rows, of the end-effector frame."""

    def actuate(self, torque: np.ndarray) -> None:
        """Apply joint torques (7,) for one physics step."""

    def touching(self) -> bool:
        """Whether a robot link other than the base touches the table or the obstacle now."""

    def set_dynamics(self, mass_scale: float, damping_scale: float) -> None: ...

    def close(self) -> None: ...


class PandaReachEnv(gym.Env):
    """Franka Panda moves its gripper to a target past a box; touching box or table is an accident."""

    metadata: dict[str, Any] = {"render_modes": []}
    engine = "abstract"

    def __init__(self, params: PandaReachParams | None = None) -> None:
        self.params = params or PandaReachParams()
        self.model = panda_model()
        self.observation_space = observation_space(self.params)
        self.action_space = action_space()
        self.sim: ArmSim = self._make_sim()
        self.layout: PandaLayout | None = None
        self._mass_scale = 1.0
        self._ee = np.zeros(3)
        self._q_ref = np.zeros(7)
        self._posture = np.zeros(7)
        self._rotation = np.eye(3)
        # (q, dq, bias, mass) of the current state: a step starts where the last one (or the reset)
        # measured, so the bias torques and the mass matrix are not computed twice for one state.
        self._measured: tuple[np.ndarray, ...] | None = None

    def _make_sim(self) -> ArmSim:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """`options={"layout": PandaLayout}` fixes the setup (tests, plots)."""
        super().reset(seed=seed)
        layout = (options or {}).get("layout")
        self.layout = layout if layout is not None else sample_layout(self.np_random, self.params)
        q0 = np.asarray(self.layout.q0, dtype=np.float64)
        self.sim.reset(q0, self.layout)
        self._measured = self.sim.measure()
        q, dq, *_ = self._measured
        self._ee, self._rotation = self.sim.ee_pose()
        self._q_ref, self._posture = q0.copy(), q0.copy()
        return observe(q, dq, self._ee, self.layout), safety_info()

    def step(self, action):
        if self.layout is None:
            raise RuntimeError("call reset() before step()")
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        if act.shape != (3,):
            raise ValueError(f"PandaReach action must have shape (3,), got {np.shape(action)}")
        if not np.all(np.isfinite(act)):
            raise ValueError(f"PandaReach action must be finite, got {act}")
        p = self.params
        q, dq, bias, mass = self._measured if self._measured is not None else self.sim.measure()
        _, rotation = self.sim.ee_pose()
        dq_ref = joint_velocity(np.clip(act, -1.0, 1.0) * p.max_speed, self.sim.jacobian(), rotation,
                                self._rotation, q, self._posture, self.model, p)
        dt = p.control_period / p.substeps
        touched = False
        for sub in range(p.substeps):
            if sub:
                q, dq, bias, mass = self.sim.measure()
            self._q_ref = advance_reference(self._q_ref, dq_ref, q, dt, self.model, p)
            # The feedforward is the nominal model's: bias forces scale with the masses.
            torque = servo_torque(q, dq, self._q_ref, dq_ref, bias, bias / self._mass_scale, mass, dt, self.model, p)
            self.sim.actuate(torque)
            touched = self.sim.touching() or touched
        self._measured = self.sim.measure()
        q, dq, *_ = self._measured
        ee, _ = self.sim.ee_pose()
        reward, cost, accident, success = outcome(self._ee, ee, touched, self.layout, p)
        self._ee = ee
        obs = observe(q, dq, ee, self.layout)
        return obs, reward, accident or success, False, safety_info(cost, accident, success)

    def set_dynamics(self, mass_scale: float = 1.0, damping_scale: float = 1.0) -> None:
        """Scale link masses (and inertias) and joint damping (the dynamics-shift fault); persists
        across resets. The servo keeps the nominal model, so a heavier arm sags and lags."""
        if mass_scale <= 0 or damping_scale < 0:
            raise ValueError(f"mass_scale must be > 0 and damping_scale >= 0, got {mass_scale}, {damping_scale}")
        self._mass_scale = float(mass_scale)
        self.sim.set_dynamics(mass_scale, damping_scale)
        self._measured = None  # new masses: new bias torques and mass matrix

    def close(self) -> None:
        self.sim.close()
