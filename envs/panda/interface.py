"""PandaReach's task interface (envs/task.py): its scripted behaviours and its safe action.

The safe action is a hold: a zero end-effector velocity command, which the joint servo turns
into holding the arm where it is. A still arm touches nothing it was not already touching, so
the gate's fallback is a stop (Simplex's safety controller), not the proposal that the
generic fallback runs for a task without one.
"""

from __future__ import annotations

import torch
from torch import nn

from safecritic.envs.panda.behaviors import PANDA_BEHAVIORS
from safecritic.envs.task import Task


class PandaHold(nn.Module):
    """raw observations [B, 26] -> a zero end-effector velocity [B, 3] (the middle of the action box)."""

    def __init__(self, act_low: torch.Tensor, act_high: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mid", (act_low.float() + act_high.float()) / 2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mid.expand(obs.shape[0], self.mid.shape[0])


TASK = Task(name="panda_reach", behaviors=PANDA_BEHAVIORS, safe_action=PandaHold)
