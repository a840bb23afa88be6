"""Task and accident Q-values for many actions per state, in one batched pass.

Every member of the ensemble is one trunk with a Q_R head (return, CQL) and up to two
Q_C heads (accident risk, CSC): the risk of following the policy afterwards and the risk
of recovering by the safest of a few candidate actions (critics/csc.py). They take the
same (s, a) inputs (the data action, uniform actions, policy samples), so one
EnsembleMLP call computes them all: one large matmul per layer, the heads nearly free.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from safecritic.critics.networks import EnsembleMLP

# The accident heads, in order (QEnsemble.cost_heads of them).
POLICY_RISK, RECOVERY_RISK = 0, 1


def pair_inputs(obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """obs [B, D] and K actions per state [K, B, A] -> the (s, a) rows [K*B, D + A]."""
    k, b = acts.shape[0], acts.shape[1]
    return torch.cat([obs.unsqueeze(0).expand(k, b, obs.shape[-1]), acts], dim=-1).reshape(k * b, -1)


class QEnsemble(nn.Module):
    """Q_R members (linear outputs) and Q_C heads (logits; Q_C = sigmoid).

    Q_C is normalised: the discounted accident probability where costs end the episode, else
    the discounted cost over its maximum q_max = 1 / (1 - gamma_C) (1 = a cost at every step).
    One scale for both kinds of cost, so the same budget epsilon, CSC weight and initial value
    mean the same on any task; the sigmoid keeps Q_C in [0, 1] where the push-up acts.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], members: int, cost_heads: int = 2,
                 cost_q_max: float = 1.0) -> None:
        super().__init__()
        if cost_heads not in (0, 1, 2):
            raise ValueError(f"cost_heads is 0, 1 or 2, got {cost_heads}")
        self.members, self.cost_heads = members, cost_heads
        self.cost_q_max = float(cost_q_max)
        self.net = EnsembleMLP(members, obs_dim + act_dim, hidden, 1 + cost_heads)

    @property
    def has_cost(self) -> bool:
        return self.cost_heads > 0

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """obs [B, obs_dim]; act [B, act_dim] or [K, B, act_dim] (K actions per state).

        Returns q_task [E, (K,) B] and cost logits [E, (K,) B, H] (None without Q_C heads).
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
        out = self.net(pairs).float().reshape(self.members, k, b, -1)  # fp32 out, also under bf16 autocast
        cost: torch.Tensor | None = None
        if self.cost_heads > 0:
            cost = out[:, :, :, 1:]
        return out[:, :, :, 0], cost

    def start_cost_heads_at(self, value: float) -> None:
        """Initialise the Q_C heads' output bias so that Q_C starts near `value` (normalised)."""
        p = min(max(value, 1e-4), 1 - 1e-4)
        with torch.no_grad():
            self.net.head.bias[..., 1:] = math.log(p / (1 - p))

    def cost_value(self, logits: torch.Tensor) -> torch.Tensor:
        """Q_C from its logits."""
        return torch.sigmoid(logits)

    def flops_per_row(self) -> int:
        return self.net.flops_per_row()
