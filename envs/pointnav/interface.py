"""PointNav's task interface (envs/task.py): derived features, a braking safe action, its
paths over the hazard map, its hazard-contact labeler and its scripted behaviours.

Everything here reads PointNav's observation layout (envs/pointnav/task.py: position,
velocity, goal - position, hazard centres - position); nothing outside envs/pointnav does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from safecritic.envs.features import smooth_norm
from safecritic.envs.pointnav.behaviors import POINTNAV_BEHAVIORS
from safecritic.envs.pointnav.task import PointNavParams
from safecritic.envs.task import Labeler, Task

_P = PointNavParams()
VELOCITY = slice(2, 4)
GOAL = slice(4, 6)
HAZARDS = slice(6, 6 + 2 * _P.n_hazards)
# 5: under 3x mass the constant zero-force stop let the point coast into a hazard in 47% of
# 60 episodes, braking at gains 2 / 5 / 20 in 1.7% / 0% / 0% (docs/design.md, "Task features and the safe action").
BRAKE_GAIN = 5.0


class PointNavFeatures(nn.Module):
    """[obs, clearance to each hazard's edge, approach speed to each hazard, distance to goal].

    Exact functions of the observation that an MLP carves out poorly from ~700 crashes:
    without them the accident critic rated a contact one step ahead as safe (docs/design.md)."""

    def __init__(self) -> None:
        super().__init__()
        self.n_hazards = _P.n_hazards
        self.reach = _P.hazard_radius + _P.agent_radius  # centre distance at which a touch happens

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, 12] -> [B, 12 + 2 * n_hazards + 1]."""
        vel = obs[:, 2:4]
        rel = obs[:, 6 : 6 + 2 * self.n_hazards].reshape(obs.shape[0], self.n_hazards, 2)
        dist = smooth_norm(rel)
        clearance = dist - self.reach
        approach = (rel * vel.unsqueeze(1)).sum(-1) / dist
        goal = smooth_norm(obs[:, 4:6]).unsqueeze(1)
        return torch.cat([obs, clearance, approach, goal], dim=1)


class PointNavBrake(nn.Module):
    """The fallback's action: a force against the measured velocity, clipped to the bounds.

    A constant zero force lets a body heavier or less damped than the data's coast into a
    hazard; braking stops it (docs/design.md, "Task features and the safe action")."""

    def __init__(self, act_low: torch.Tensor, act_high: torch.Tensor, gain: float = BRAKE_GAIN) -> None:
        super().__init__()
        self.register_buffer("low", act_low.clone().float())
        self.register_buffer("high", act_high.clone().float())
        self.register_buffer("mid", (act_low.float() + act_high.float()) / 2)
        self.gain = float(gain)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(self.mid - self.gain * obs[:, 2:4], self.high), self.low)


def hazard_contact(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """cost = 1 when the agent touches a hazard after the step (PointNav's own cost)."""
    rel = next_obs[:, HAZARDS].reshape(len(next_obs), _P.n_hazards, 2)
    touching = np.linalg.norm(rel, axis=-1) < _P.hazard_radius + _P.agent_radius
    return touching.any(axis=1).astype(np.float32)


def plot_paths(episodes: list[dict[str, Any]], title: str, path: Path) -> None:
    """Paths over each traced episode's hazard map; an accident ends in a red cross."""
    from safecritic.deploy.plots import grid_of_panels

    traced = [e for e in episodes if e.get("trace")][:12]
    if not traced:
        return

    def panel(ax, ep: dict[str, Any]) -> None:
        import matplotlib.pyplot as plt

        obs = np.array(ep["trace"]["obs"])
        pos = obs[:, :2]
        goal = obs[0, GOAL] + pos[0]
        for h in obs[0, HAZARDS].reshape(-1, 2) + pos[0]:
            ax.add_patch(plt.Circle(h, _P.hazard_radius, color="orange", alpha=0.5))
        ax.add_patch(plt.Circle(goal, _P.goal_radius, color="green", alpha=0.4))
        ax.plot(pos[:, 0], pos[:, 1], lw=1.2)
        ax.plot(*pos[0], "ko", ms=3)
        if ep["accident"]:
            ax.plot(*pos[-1], "rx", ms=10, mew=2)
        half = _P.arena_half
        ax.set(xlim=(-half, half), ylim=(-half, half), aspect="equal", xticks=[], yticks=[])
        outcome = "accident" if ep["accident"] else "success" if ep["success"] else "timeout"
        ax.set_title(f"#{ep['index']} {outcome}", fontsize=8)

    grid_of_panels(traced, panel, title, path)


TASK = Task(
    name="pointnav",
    behaviors=POINTNAV_BEHAVIORS,
    features=PointNavFeatures,
    safe_action=PointNavBrake,
    plot_paths=plot_paths,
    labelers={"pointnav_hazard": Labeler(hazard_contact, _P.obs_dim, "PointNav hazard contact")},
)
