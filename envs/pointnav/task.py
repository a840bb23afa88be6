"""PointNav task logic shared by both engines: layout, observation, reward and cost.

The physics engines only move a point mass; everything that defines the task lives
here, once, so the MuJoCo and PyBullet twins cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces


@dataclass(frozen=True)
class PointNavParams:
    """Constants that define PointNav-v0 (DESIGN.md). Changing one is a new task version."""

    arena_half: float = 2.0  # arena [-2, 2]^2 with walls
    agent_radius: float = 0.1
    n_hazards: int = 3
    hazard_radius: float = 0.35
    goal_radius: float = 0.3
    control_period: float = 0.05  # seconds per env step
    substeps: int = 5  # physics step = control_period / substeps = 0.01 s
    mass: float = 1.0  # kg
    damping: float = 4.0  # N s/m on each slide joint: top speed force_max/damping = 1.25 m/s
    force_max: float = 5.0  # N; force = action * force_max
    max_steps: int = 200
    progress_reward: float = 10.0  # reward per metre of distance-to-goal decrease
    step_penalty: float = 0.01
    goal_bonus: float = 10.0
    # Layout sampling: start and goal on opposite sides, hazard 0 near the straight line.
    side_min: float = 1.2  # |side coordinate| of start and goal lies in [side_min, side_max]
    side_max: float = 1.7
    cross_max: float = 1.5  # |other coordinate| of start and goal
    line_fraction: tuple[float, float] = (0.35, 0.65)  # where hazard 0 sits along start->goal
    line_offset: float = 0.55  # hazard 0's perpendicular offset from the line is in +-this
    clearance: float = 0.3  # free space kept around start and goal beyond the hazard radius
    hazard_gap: float = 0.3  # free space between two hazards beyond the agent's diameter:
    # without it two hazards can form a slot narrower than the agent, a trap for any policy

    @property
    def wall(self) -> float:
        """Largest |coordinate| of the agent's centre (walls minus its radius)."""
        return self.arena_half - self.agent_radius

    @property
    def obs_dim(self) -> int:
        return 6 + 2 * self.n_hazards


@dataclass
class Layout:
    """One episode's geometry (world coordinates)."""

    start: np.ndarray  # (2,)
    goal: np.ndarray  # (2,)
    hazards: np.ndarray  # (n_hazards, 2)


def observation_space(p: PointNavParams) -> spaces.Box:
    """12 floats: position, velocity, goal - position, hazard centres - position (nearest first)."""
    span = 2.0 * p.arena_half
    top_speed = 10.0 * p.force_max / p.damping  # generous: never reached in practice
    high = np.array(
        [p.arena_half] * 2 + [top_speed] * 2 + [span] * 2 + [span] * (2 * p.n_hazards), dtype=np.float32
    )
    return spaces.Box(-high, high, dtype=np.float32)


def action_space() -> spaces.Box:
    """Normalised force command in [-1, 1]^2."""
    return spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)


def sample_layout(rng: np.random.Generator, p: PointNavParams) -> Layout:
    """Start and goal on opposite sides; hazard 0 near the start->goal line; the rest random."""
    axis = int(rng.integers(2))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    start, goal = np.zeros(2), np.zeros(2)
    start[axis] = -sign * rng.uniform(p.side_min, p.side_max)
    goal[axis] = sign * rng.uniform(p.side_min, p.side_max)
    start[1 - axis] = rng.uniform(-p.cross_max, p.cross_max)
    goal[1 - axis] = rng.uniform(-p.cross_max, p.cross_max)

    keep_out = p.hazard_radius + p.clearance
    hazards: list[np.ndarray] = []
    direction = goal - start
    normal = np.array([-direction[1], direction[0]]) / np.linalg.norm(direction)
    while not hazards:  # hazard 0: near the line, never on the start or goal
        t = rng.uniform(*p.line_fraction)
        centre = start + t * direction + rng.uniform(-p.line_offset, p.line_offset) * normal
        if _far_from(centre, [start, goal], keep_out):
            hazards.append(centre)
    limit = p.arena_half - p.hazard_radius
    min_separation = 2.0 * (p.hazard_radius + p.agent_radius) + p.hazard_gap
    while len(hazards) < p.n_hazards:
        centre = rng.uniform(-limit, limit, size=2)
        if _far_from(centre, [start, goal], keep_out) and _far_from(centre, hazards, min_separation):
            hazards.append(centre)
    return Layout(start=start, goal=goal, hazards=np.stack(hazards))


def _far_from(point: np.ndarray, others: list[np.ndarray], distance: float) -> bool:
    return all(float(np.linalg.norm(point - other)) >= distance for other in others)


def observe(pos: np.ndarray, vel: np.ndarray, layout: Layout) -> np.ndarray:
    """The observation vector (float32). Hazards are listed nearest first, like the
    returns of a range sensor: the hazard that matters most always sits in the same slot."""
    rel = layout.hazards - pos
    order = np.argsort(np.linalg.norm(rel, axis=1), kind="stable")
    parts = [pos, vel, layout.goal - pos, rel[order].ravel()]
    return np.concatenate(parts).astype(np.float32)


def hazard_distances(pos: np.ndarray, hazards: np.ndarray) -> np.ndarray:
    """Distance from the agent's centre to each hazard centre."""
    return np.linalg.norm(hazards - pos, axis=-1)


def outcome(prev_pos: np.ndarray, pos: np.ndarray, layout: Layout, p: PointNavParams) -> tuple[float, float, bool, bool]:
    """(reward, cost, accident, success) of moving from prev_pos to pos.

    Touching a hazard is an accident (cost 1, terminates) and takes precedence over
    reaching the goal. There is no reward penalty for an accident: the accident
    critic has to carry safety, not reward shaping (DESIGN.md).
    """
    accident = bool(np.any(hazard_distances(pos, layout.hazards) < p.hazard_radius + p.agent_radius))
    d_prev = float(np.linalg.norm(layout.goal - prev_pos))
    d_now = float(np.linalg.norm(layout.goal - pos))
    success = (not accident) and d_now < p.goal_radius
    reward = p.progress_reward * (d_prev - d_now) - p.step_penalty + (p.goal_bonus if success else 0.0)
    return reward, (1.0 if accident else 0.0), accident, success
