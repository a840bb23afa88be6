"""PandaReach task logic shared by both engines: layout, spaces, observation, reward.

Everything that defines the task lives here once (as for PointNav), so the PyBullet and
MuJoCo twins cannot drift apart; the engines only move the arm and report contacts.

World frame: the robot's base at the origin, the table top is the plane z = 0, x points
in front of the robot. Observation (26 float32, the same in both engines):

    [0:7]    joint positions q (rad)
    [7:14]   joint velocities dq (rad/s)
    [14:17]  end-effector position (m; the point between the fingertips)
    [17:20]  target - end-effector
    [20:23]  obstacle centre - end-effector
    [23:26]  obstacle half-extents (an axis-aligned box standing on the table)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from safecritic.envs.panda.urdf import panda_model

Q = slice(0, 7)
DQ = slice(7, 14)
EE = slice(14, 17)
TARGET = slice(17, 20)
OBSTACLE = slice(20, 23)
HALF = slice(23, 26)
OBS_DIM = 26


@dataclass(frozen=True)
class PandaReachParams:
    """Constants that define PandaReach-v0. Changing one is a new task version."""

    control_period: float = 0.05  # seconds per env step
    substeps: int = 5  # physics step 0.01 s; the joint servo runs at every one
    max_steps: int = 200
    max_speed: float = 0.25  # m/s per Cartesian axis at |action| = 1
    success_radius: float = 0.02
    progress_reward: float = 10.0  # per metre of end-effector-to-target distance decrease
    step_penalty: float = 0.01
    goal_bonus: float = 10.0
    # Start: the gripper points down above the table, 0.45 m in front of the base at q1 = 0
    # (found by IK on the URDF); q1 turns it to one side, the target lies on the other side.
    home: tuple[float, ...] = (0.0, -0.1321, 0.0, -2.5249, 0.0, 2.3928, -0.7854)
    start_yaw: tuple[float, float] = (0.35, 0.6)  # |q1| at the start, rad
    joint_noise: float = 0.03  # rad, uniform, on joints 2-7 at the start
    target_x: tuple[float, float] = (0.35, 0.58)
    target_y: tuple[float, float] = (0.2, 0.35)  # |y|, on the side opposite the start
    target_z: tuple[float, float] = (0.05, 0.25)
    target_reach: float = 0.65  # max horizontal distance of the target from the base
    # Obstacle: a box on the table across the start->target line, its top above the line.
    line_fraction: tuple[float, float] = (0.4, 0.6)
    line_offset: float = 0.02  # horizontal offset of its centre from the line, +-
    half_x: tuple[float, float] = (0.06, 0.12)
    half_y: tuple[float, float] = (0.025, 0.045)
    above_line: tuple[float, float] = (0.04, 0.1)  # its top above the line's height there
    clearance: float = 0.1  # horizontal gap from the box to the start and the target:
    # the hand (0.2 m long, 0.065 m wide, turned with the start yaw) must fit beside it
    table_centre: tuple[float, float, float] = (0.35, 0.0, -0.02)
    table_half: tuple[float, float, float] = (0.65, 0.75, 0.02)
    # Joint servo (both engines): tau = kp (q_ref - q) + kd (dq_ref - dq) + nominal bias.
    kp: tuple[float, ...] = (400.0, 400.0, 400.0, 400.0, 100.0, 100.0, 50.0)  # N m/rad
    kd: tuple[float, ...] = (40.0, 40.0, 40.0, 40.0, 8.0, 8.0, 4.0)  # N m s/rad
    joint_damping: float = 0.5  # N m s/rad: the joints' own viscous friction (dynamics fault scales it)
    ref_window: float = 0.1  # rad: the reference leads the measured angle by at most this
    # Cartesian command -> joint velocities (damped least squares).
    dls_damping: float = 0.05
    orientation_gain: float = 2.0  # 1/s: turns the gripper back to its start orientation
    posture_gain: float = 1.0  # 1/s: null-space pull to the start posture (elbow up)
    limit_margin: float = 0.05  # rad kept from every joint limit
    speed_fraction: float = 0.8  # of the URDF's joint speed limits

    @property
    def obs_dim(self) -> int:
        return OBS_DIM


@dataclass
class PandaLayout:
    """One episode's setup (world coordinates)."""

    q0: np.ndarray  # (7,) initial joint angles
    target: np.ndarray  # (3,)
    obstacle_centre: np.ndarray  # (3,)
    obstacle_half: np.ndarray  # (3,)


def observation_space(p: PandaReachParams) -> spaces.Box:
    model = panda_model()
    span = 2.0
    low = np.concatenate([model.lower - 0.5, -10 * model.velocity, [-span] * 3, [-2 * span] * 6, [0.0] * 3])
    high = np.concatenate([model.upper + 0.5, 10 * model.velocity, [span] * 3, [2 * span] * 6, [span] * 3])
    return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)


def action_space() -> spaces.Box:
    """End-effector velocity command in [-1, 1]^3 (x max_speed, m/s)."""
    return spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)


def box_gap(point: np.ndarray, centre: np.ndarray, half: np.ndarray) -> float:
    """Distance from a point to an axis-aligned box (0 inside)."""
    return float(np.linalg.norm(np.maximum(np.abs(point - centre) - half, 0.0)))


def sample_layout(rng: np.random.Generator, p: PandaReachParams) -> PandaLayout:
    """Start on one side, target on the other, a box on the table across the line between."""
    model = panda_model()
    while True:
        side = 1.0 if rng.random() < 0.5 else -1.0
        q0 = np.array(p.home, dtype=np.float64)
        q0[0] = side * rng.uniform(*p.start_yaw)
        q0[1:] += rng.uniform(-p.joint_noise, p.joint_noise, size=6)
        start = model.forward(q0)[0]
        target = np.array([rng.uniform(*p.target_x), -side * rng.uniform(*p.target_y), rng.uniform(*p.target_z)])
        if np.linalg.norm(target[:2]) > p.target_reach:
            continue
        line = target - start
        normal = np.array([-line[1], line[0], 0.0]) / np.linalg.norm(line[:2])
        point = start + rng.uniform(*p.line_fraction) * line + rng.uniform(-p.line_offset, p.line_offset) * normal
        top = point[2] + rng.uniform(*p.above_line)
        half = np.array([rng.uniform(*p.half_x), rng.uniform(*p.half_y), top / 2])
        centre = np.array([point[0], point[1], top / 2])
        flat = np.array([1.0, 1.0, 0.0])  # horizontal gaps: the box stands on the table
        if min(box_gap(start * flat, centre * flat, half * flat), box_gap(target * flat, centre * flat, half * flat)) >= p.clearance:
            return PandaLayout(q0=q0, target=target, obstacle_centre=centre, obstacle_half=half)


def observe(q: np.ndarray, dq: np.ndarray, ee: np.ndarray, layout: PandaLayout) -> np.ndarray:
    parts = [q, dq, ee, layout.target - ee, layout.obstacle_centre - ee, layout.obstacle_half]
    return np.concatenate(parts).astype(np.float32)


def outcome(prev_ee: np.ndarray, ee: np.ndarray, touched: bool, layout: PandaLayout,
            p: PandaReachParams) -> tuple[float, float, bool, bool]:
    """(reward, cost, accident, success) of moving the end effector from prev_ee to ee.

    A contact is an accident (cost 1, terminates) and takes precedence over reaching the
    target; there is no reward penalty for it (DESIGN.md: the accident critic carries safety)."""
    d_prev = float(np.linalg.norm(layout.target - prev_ee))
    d_now = float(np.linalg.norm(layout.target - ee))
    success = (not touched) and d_now < p.success_radius
    reward = p.progress_reward * (d_prev - d_now) - p.step_penalty + (p.goal_bonus if success else 0.0)
    return reward, (1.0 if touched else 0.0), touched, success
