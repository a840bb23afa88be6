"""Scripted PandaReach behaviours (DESIGN.md): reckless, cautious, random.

They read only the observation (envs/panda/task.py: end effector, target, obstacle
centre and half-extents relative to it), so they run unchanged in both engines and
under faults. Actions are end-effector velocity commands; the env's own controller
turns them into joint motion. Reckless shows what to avoid (it cuts through the box),
cautious what to do (over the box, then down), random covers the rest of the workspace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from safecritic.envs.random_walk import RandomWalk

from safecritic.envs.panda.task import EE, HALF, OBSTACLE, TARGET


def _towards(offset: np.ndarray, gain: float, slow_radius: float) -> np.ndarray:
    """A command of magnitude `gain` along `offset`, tapering linearly inside `slow_radius`
    (a proportional approach: no overshoot at the target)."""
    distance = float(np.linalg.norm(offset))
    if distance < 1e-9:
        return np.zeros(3)
    return gain * offset / distance * min(1.0, distance / slow_radius)


def _rotate(v: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """v turned by the rotation vector `rotvec` (Rodrigues)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return v
    k = rotvec / angle
    return v * np.cos(angle) + np.cross(k, v) * np.sin(angle) + k * (k @ v) * (1.0 - np.cos(angle))


@dataclass
class Reckless:
    """Straight at the target at full speed, heading off by a per-episode angle, with noise:
    fast, usually cuts into the box (the heading error lets some runs pass over or beside it)."""

    name: str = "reckless"
    gain: float = 1.0
    slow_radius: float = 0.05  # m
    heading_std: float = 0.5  # rad, per episode, about a random axis; it fades at the target
    heading_max: float = 0.9  # rad: near 90 degrees off, the pursuit circles the target for ever
    noise_std: float = 0.15
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)
    _turn: np.ndarray = field(default_factory=lambda: np.zeros(3), repr=False)

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng
        axis = rng.normal(size=3)
        angle = float(np.clip(rng.normal(0.0, self.heading_std), -self.heading_max, self.heading_max))
        self._turn = axis / max(float(np.linalg.norm(axis)), 1e-9) * angle

    def act(self, obs: np.ndarray) -> np.ndarray:
        to_target = np.asarray(obs[TARGET], dtype=np.float64)
        near = min(1.0, float(np.linalg.norm(to_target)) / self.slow_radius)
        action = _rotate(_towards(to_target, self.gain, self.slow_radius), near * self._turn)
        return np.clip(action + self._rng.normal(0.0, self.noise_std, size=3), -1.0, 1.0).astype(np.float32)


@dataclass
class Cautious:
    """Up to a via height above the box, across above the target, then straight down; slow.

    Stateless: the leg is chosen from the observation alone, so a fault that pushes the
    arm back (a sag, a delay) makes it redo a leg rather than lose track of its plan."""

    name: str = "cautious"
    gain: float = 0.6
    slow_radius: float = 0.04
    over_box: float = 0.08  # m of air between the box top and the end effector in transit
    above_target: float = 0.03  # horizontal distance from the target under which it descends
    noise_std: float = 0.05
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def waypoint(self, obs: np.ndarray) -> np.ndarray:
        """The point (relative to the end effector) it heads for now."""
        obs = np.asarray(obs, dtype=np.float64)
        ee, to_target = obs[EE], obs[TARGET]
        via = ee[2] + obs[OBSTACLE][2] + obs[HALF][2] + self.over_box  # absolute height
        if np.linalg.norm(to_target[:2]) < self.above_target:
            return to_target  # down to the target
        if ee[2] < via - 0.02:
            return np.array([0.0, 0.0, via - ee[2]])  # straight up where it is
        return np.array([to_target[0], to_target[1], max(via, ee[2] + to_target[2]) - ee[2]])  # across

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = _towards(self.waypoint(obs), self.gain, self.slow_radius)
        return np.clip(action + self._rng.normal(0.0, self.noise_std, size=3), -1.0, 1.0).astype(np.float32)


@dataclass
class Random(RandomWalk):
    """The arm's random walk (envs/random_walk.py): a direction uniform on the sphere and a throttle
    in [0.2, 1), held for 4-15 steps; it touches the table and the box at many speeds and angles."""

    dim: int = 3
    throttle: tuple[float, float] = (0.2, 1.0)


PANDA_BEHAVIORS = {"reckless": Reckless, "cautious": Cautious, "random": Random}
