"""PandaReach's task interface (envs/task.py): derived features and its scripted behaviours.

No safe action of its own: the gate's generic fallback for such a task, the proposal (which
the constraint fitted to minimise the risk where nothing is within the budget), measured
better than a hold. On 100 MuJoCo episodes of the preset's run, a zero-velocity hold as the
fallback gave 51% success and a proposal fallback 69%, both without accidents. A conservative
accident critic vetoes every candidate near the table, and a hold then keeps the arm there
until the time runs out.
"""

from __future__ import annotations

import torch
from torch import nn

from safecritic.envs.features import smooth_norm
from safecritic.envs.panda.behaviors import PANDA_BEHAVIORS
from safecritic.envs.panda.task import HALF, OBSTACLE, TARGET
from safecritic.envs.task import Task


class PandaFeatures(nn.Module):
    """[obs, distance to the target, its horizontal part, the air above the box top, the
    horizontal gap to the box].

    Exact functions of the observation at the scale that decides the task (a 2 cm success
    radius, a few cm of air over the box) that an MLP carves out poorly from offsets spread
    over half a metre: without them the actor came within 2-4 cm of the target and drifted
    off again (docs/design.md, "PandaReach")."""

    def __init__(self) -> None:
        super().__init__()
        self.target, self.box, self.half = TARGET.start, OBSTACLE.start, HALF.start  # 3 entries each

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, 26] -> [B, 30]."""
        to_target = obs[:, self.target:self.target + 3]
        to_box = obs[:, self.box:self.box + 3]
        half = obs[:, self.half:self.half + 3]
        distance = smooth_norm(to_target).unsqueeze(1)
        horizontal = smooth_norm(to_target[:, :2]).unsqueeze(1)
        air = -(to_box[:, 2:3] + half[:, 2:3])  # end effector height over the box top
        outside = (to_box[:, :2].abs() - half[:, :2]).clamp_min(0.0)
        gap = smooth_norm(outside).unsqueeze(1)
        return torch.cat([obs, distance, horizontal, air, gap], dim=1)


TASK = Task(name="panda_reach", behaviors=PANDA_BEHAVIORS, features=PandaFeatures)
