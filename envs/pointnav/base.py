"""PointNav as a gymnasium env, independent of the physics engine.

Subclasses only supply a `PointMassSim`; spaces, control period, episode length,
reward, cost and reset are defined here once (DESIGN.md: identical twins).
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from safecritic.envs.task import safety_info
from safecritic.envs.pointnav.task import (
    Layout,
    PointNavParams,
    action_space,
    observation_space,
    observe,
    outcome,
    sample_layout,
)


class PointMassSim(Protocol):
    """What an engine must do: move a point mass in the plane under a force."""

    def reset(self, pos: np.ndarray) -> None: ...

    def step(self, force: np.ndarray) -> None:
        """Advance one control period with a constant force (N)."""

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """(position, velocity), both shape (2,)."""

    def set_dynamics(self, mass_scale: float, damping_scale: float) -> None: ...

    def close(self) -> None: ...


class PointNavEnv(gym.Env):
    """Point mass reaches a goal past circular hazards; touching one is an accident."""

    metadata: dict[str, Any] = {"render_modes": []}
    engine = "abstract"

    def __init__(self, params: PointNavParams | None = None) -> None:
        self.params = params or PointNavParams()
        self.observation_space = observation_space(self.params)
        self.action_space = action_space()
        self.sim: PointMassSim = self._make_sim()
        self.layout: Layout | None = None
        self._pos = np.zeros(2)

    def _make_sim(self) -> PointMassSim:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """`options={"layout": Layout}` fixes the geometry (tests, plots)."""
        super().reset(seed=seed)
        layout = (options or {}).get("layout")
        self.layout = layout if layout is not None else sample_layout(self.np_random, self.params)
        self.sim.reset(np.asarray(self.layout.start, dtype=np.float64))
        pos, vel = self.sim.state()
        self._pos = pos
        return observe(pos, vel, self.layout), safety_info()

    def step(self, action):
        if self.layout is None:
            raise RuntimeError("call reset() before step()")
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        if act.shape != (2,):
            raise ValueError(f"PointNav action must have shape (2,), got {np.shape(action)}")
        if not np.all(np.isfinite(act)):
            raise ValueError(f"PointNav action must be finite, got {act}")
        self.sim.step(np.clip(act, -1.0, 1.0) * self.params.force_max)
        pos, vel = self.sim.state()
        reward, cost, accident, success = outcome(self._pos, pos, self.layout, self.params)
        self._pos = pos
        obs = observe(pos, vel, self.layout)
        return obs, reward, accident or success, False, safety_info(cost, accident, success)

    def set_dynamics(self, mass_scale: float = 1.0, damping_scale: float = 1.0) -> None:
        """Scale mass and damping (the dynamics-shift fault); persists across resets."""
        self.sim.set_dynamics(mass_scale, damping_scale)

    def close(self) -> None:
        self.sim.close()
