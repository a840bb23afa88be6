"""Task and accident Q-values for many actions per state, in one batched pass.

Q_R and Q_C take the same (s, a) inputs: the data action, uniform actions, pi(s) and
pi(s') samples. Computing every member of both critics in one EnsembleMLP call shares
the input assembly and runs one large matmul per layer. With `shared_trunk` each
member has a Q_R head and a Q_C head on one trunk, which halves the FLOPs again.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from safecritic.critics.networks import EnsembleMLP


def pair_inputs(obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """obs [B, D] and K actions per state [K, B, A] -> the (s, a) rows [K*B, D + A]."""
    k, b = acts.shape[0], acts.shape[1]
    return torch.cat([obs.unsqueeze(0).expand(k, b, obs.shape[-1]), acts], dim=-1).reshape(k * b, -1)


class QEnsemble(nn.Module):
    """Q_R members (linear outputs) and optional Q_C members (logits; Q_C = q_max * sigmoid).

    Q_C is a discounted accident probability (or discounted cost), so it is bounded:
    the sigmoid keeps it in [0, q_max] even where the conservative term pushes it up.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        task_members: int,
        cost_members: int = 0,
        shared_trunk: bool = False,
        layer_norm: bool = False,
        cost_q_max: float = 1.0,
    ) -> None:
        super().__init__()
        if shared_trunk and cost_members not in (0, task_members):
            raise ValueError("a shared trunk needs as many cost members as task members")
        self.task_members, self.cost_members, self.shared_trunk = task_members, cost_members, shared_trunk
        self.cost_q_max = float(cost_q_max)
        if shared_trunk:
            members, heads = task_members, 1 + (cost_members > 0)
        else:
            members, heads = task_members + cost_members, 1
        self.net = EnsembleMLP(members, obs_dim + act_dim, hidden, heads, layer_norm=layer_norm)

    @property
    def has_cost(self) -> bool:
        return self.cost_members > 0

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """obs [B, obs_dim]; act [B, act_dim] or [K, B, act_dim] (K actions per state).

        Returns q_task [E_R, (K,) B] and cost logits [E_C, (K,) B] (None without Q_C).
        """
        single = act.dim() == 2
        acts = act.unsqueeze(0) if single else act
        q_task, cost = self.from_pairs(pair_inputs(obs, acts), acts.shape[0], acts.shape[1])
        if single:
            q_task = q_task.squeeze(1)
            if cost is not None:
                cost = cost.squeeze(1)
        return q_task, cost

    @torch.jit.export
    def from_pairs(self, pairs: torch.Tensor, k: int, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward` on inputs already assembled by `pair_inputs` ([K*B, obs_dim + act_dim]):
        the gate builds them once for the critics and the OOD detector."""
        out = self.net(pairs).float().reshape(self.net.members, k, b, -1)  # fp32 out, also under bf16 autocast
        cost: torch.Tensor | None = None
        if self.shared_trunk:
            q_task = out[:, :, :, 0]
            if self.cost_members > 0:
                cost = out[:, :, :, 1]
        else:
            q_task = out[: self.task_members, :, :, 0]
            if self.cost_members > 0:
                cost = out[self.task_members :, :, :, 0]
        return q_task, cost

    def cost_value(self, logits: torch.Tensor) -> torch.Tensor:
        """Q_C from its logits."""
        return self.cost_q_max * torch.sigmoid(logits)

    def flops_per_row(self) -> int:
        return self.net.flops_per_row()
