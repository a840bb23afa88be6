"""Derived observation features a task declares for the networks (perception preprocessing).

The observation stays what the env emits (DESIGN.md's spaces); a featurizer appends
quantities that are exact functions of it but hard for an MLP to carve out of raw
coordinates from few examples. For PointNav: the clearance to each hazard's edge and
the speed of approach to it. Without them the accident critic, trained on ~700
crashes, rated a contact one step ahead as safe (docs/design-notes.md). Featurizers
are TorchScript-able modules: they ship inside the exported controller.
"""

from __future__ import annotations

import torch
from torch import nn

from safecritic.envs.pointnav.task import PointNavParams
from safecritic.envs.registry import task_of


class PointNavFeatures(nn.Module):
    """[obs, clearance to each hazard's edge, approach speed to each hazard, distance to goal]."""

    def __init__(self, params: PointNavParams | None = None) -> None:
        super().__init__()
        p = params or PointNavParams()
        self.n_hazards = p.n_hazards
        self.reach = p.hazard_radius + p.agent_radius  # centre distance at which a touch happens

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, 12] -> [B, 12 + 2 * n_hazards + 1]."""
        vel = obs[:, 2:4]
        rel = obs[:, 6 : 6 + 2 * self.n_hazards].reshape(obs.shape[0], self.n_hazards, 2)
        dist = torch.sqrt((rel * rel).sum(-1) + 1e-12)
        clearance = dist - self.reach
        approach = (rel * vel.unsqueeze(1)).sum(-1) / dist
        goal = torch.sqrt((obs[:, 4:6] * obs[:, 4:6]).sum(-1, keepdim=True) + 1e-12)
        return torch.cat([obs, clearance, approach, goal], dim=1)

    def out_dim(self, obs_dim: int) -> int:
        return obs_dim + 2 * self.n_hazards + 1


class NoFeatures(nn.Module):
    """The observation as it is."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def out_dim(self, obs_dim: int) -> int:
        return obs_dim


FEATURIZERS = {"pointnav": PointNavFeatures}


def featurizer_for(env_id: str, enabled: bool = True) -> nn.Module:
    """The task's featurizer (or the identity when disabled or the task declares none)."""
    task = task_of(env_id)
    if enabled and task in FEATURIZERS:
        return FEATURIZERS[task]()
    return NoFeatures()
