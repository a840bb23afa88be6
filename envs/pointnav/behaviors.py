"""Scripted PointNav behaviours (DESIGN.md): reckless, cautious, random (+ zigzag, held out).

They read only the observation (position, velocity, goal - position, hazard centres -
position), so they run unchanged in both engines and under faults. Together they give
a dataset both what to do (reach the goal) and what not to do (touch a hazard).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from safecritic.envs.random_walk import RandomWalk

from safecritic.envs.pointnav.task import PointNavParams

_PARAMS = PointNavParams()


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.zeros_like(v)


def _split(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(velocity, goal - position, hazard centres - position as (n, 2))."""
    obs = np.asarray(obs, dtype=np.float64)
    return obs[2:4], obs[4:6], obs[6:].reshape(-1, 2)


@dataclass
class Reckless:
    """Full speed straight at the goal, with a slowly wandering heading: fast, often crashes."""

    name: str = "reckless"
    gain: float = 1.0
    heading_std: float = 0.25  # rad: per-episode heading bias, so some runs miss the hazard
    noise_std: float = 0.15
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)
    _bias: float = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._bias = float(rng.normal(0.0, self.heading_std))

    def act(self, obs: np.ndarray) -> np.ndarray:
        _, to_goal, _ = _split(obs)
        c, s = np.cos(self._bias), np.sin(self._bias)
        direction = np.array([[c, -s], [s, c]]) @ _unit(to_goal)
        action = self.gain * direction + self._rng.normal(0.0, self.noise_std, size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


@dataclass
class Cautious:
    """Potential field: slow attraction to the goal, repulsion and a sidestep around hazards."""

    name: str = "cautious"
    gain: float = 0.55  # ~0.7 m/s top speed: safe and slow
    influence: float = 0.45  # m of clearance inside which a hazard repels
    repulsion: float = 0.35
    noise_std: float = 0.1
    hazard_reach: float = _PARAMS.hazard_radius + _PARAMS.agent_radius
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def act(self, obs: np.ndarray) -> np.ndarray:
        vel, to_goal, hazards = _split(obs)
        goal_dir = _unit(to_goal)
        push = np.zeros(2)
        for rel in hazards:
            away = -rel  # from the hazard centre to the agent
            clearance = float(np.linalg.norm(away)) - self.hazard_reach
            if clearance >= self.influence:
                continue
            clearance = max(clearance, 1e-3)
            radial = _unit(away)
            tangent = np.array([-radial[1], radial[0]])
            if tangent @ goal_dir < 0:  # go round on the side that leads to the goal
                tangent = -tangent
            strength = self.repulsion * (1.0 / clearance - 1.0 / self.influence)
            push += strength * (radial + tangent)
        direction = _unit(goal_dir + push)
        # Brake against the current velocity a little so the sidestep is not overshot.
        action = self.gain * direction - 0.3 * vel + self._rng.normal(0.0, self.noise_std, size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


@dataclass
class Random(RandomWalk):
    """PointNav's random walk (envs/random_walk.py): a heading uniform in angle and a throttle in
    [0.1, 1), held for 4-15 steps."""

    dim: int = 2
    throttle: tuple[float, float] = (0.1, 1.0)

    def direction(self, rng: np.random.Generator) -> np.ndarray:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        return np.array([np.cos(angle), np.sin(angle)])


@dataclass
class Zigzag:
    """Weaves towards the goal, heading swinging +-60 degrees: an operator the default data never saw.

    Not part of the default mixture: the OOD report uses it as the behaviour left out
    of training (in-distribution states, unfamiliar actions).
    """

    name: str = "zigzag"
    gain: float = 0.8
    amplitude: float = np.pi / 3
    period: int = 16  # steps per full swing
    noise_std: float = 0.05
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)
    _t: int = 0
    _phase: float = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        self._rng, self._t = rng, 0
        self._phase = float(rng.uniform(0, 2 * np.pi))

    def act(self, obs: np.ndarray) -> np.ndarray:
        _, to_goal, _ = _split(obs)
        angle = self.amplitude * np.sin(2 * np.pi * self._t / self.period + self._phase)
        self._t += 1
        c, s = np.cos(angle), np.sin(angle)
        action = self.gain * (np.array([[c, -s], [s, c]]) @ _unit(to_goal)) + self._rng.normal(0.0, self.noise_std, 2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


POINTNAV_BEHAVIORS = {"reckless": Reckless, "cautious": Cautious, "random": Random, "zigzag": Zigzag}
