"""CQL(H) task critic loss (Kumar et al. 2020): Bellman error + alpha * (logsumexp Q - Q on data).

The logsumexp over actions is estimated with importance sampling from three sources
(uniform, pi(.|s), pi(.|s')), each corrected by its log-density, as in the CQL paper's
continuous-action variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SampledActions:
    """Actions for the conservative terms, all in the normalised action box [-1, 1]^A.

    Shapes: actions [3N, B, A] ordered (uniform, pi(s), pi(s')); log_density [3N, B].
    """

    actions: torch.Tensor
    log_density: torch.Tensor
    n: int

    @property
    def uniform(self) -> slice:
        return slice(0, self.n)

    @property
    def policy(self) -> slice:
        return slice(self.n, 2 * self.n)

    @property
    def off_data(self) -> slice:
        """Uniform and pi(s) samples: the mu of CSC's push-up term."""
        return slice(0, 2 * self.n)


def uniform_log_density(act_dim: int) -> float:
    """log of the uniform density on [-1, 1]^act_dim."""
    return -act_dim * math.log(2.0)


def sample_actions(
    pi_s: tuple[torch.Tensor, torch.Tensor],
    pi_next: tuple[torch.Tensor, torch.Tensor],
    n: int,
    batch: int,
    act_dim: int,
    generator: torch.Generator,
) -> SampledActions:
    """Stack uniform actions with the given pi(s) and pi(s') samples ((actions, log_probs))."""
    uniform = torch.rand(n, batch, act_dim, generator=generator) * 2.0 - 1.0
    uniform_logp = torch.full((n, batch), uniform_log_density(act_dim))
    actions = torch.cat([uniform, pi_s[0], pi_next[0]], dim=0)
    log_density = torch.cat([uniform_logp, pi_s[1], pi_next[1]], dim=0)
    return SampledActions(actions, log_density, n)


def cql_gap(q_data: torch.Tensor, q_sampled: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
    """Per-member conservative gap: E_s[logsumexp_k (Q(s, a_k) - log mu(a_k)) - Q(s, a_data)].

    q_data [E, B]; q_sampled [E, K, B]; log_density [K, B]. Returns [E].
    """
    return (torch.logsumexp(q_sampled - log_density.unsqueeze(0), dim=1) - q_data).mean(dim=-1)


def task_target(
    reward: torch.Tensor, terminal: torch.Tensor, q_next: torch.Tensor, gamma: float | torch.Tensor,
    next_logp: torch.Tensor | None = None, temperature: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """r + gamma (1 - terminal) (min_e Q_target(s', a') [- temperature log pi(a'|s')]); gamma
    per row for n-step backups (gamma^steps)."""
    v_next = q_next.min(dim=0).values
    if next_logp is not None:
        v_next = v_next - temperature * next_logp
    return reward + gamma * (1.0 - terminal) * v_next


def bellman_loss(q_data: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared Bellman error summed over members (each member fits the same target)."""
    return F.mse_loss(q_data, target.unsqueeze(0).expand_as(q_data), reduction="none").mean(dim=-1).sum()
