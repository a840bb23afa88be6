"""CSC-style accident critic (Bharadhwaj et al. 2021): a conservative *over*-estimate of risk.

Q_C(s, a) is the expected discounted cost over its maximum q_max (normalised to [0, 1]);
when accidents terminate it is the discounted probability of an accident. Its conservative term has the opposite sign
to CQL's: minimise alpha_C (E_D[Q_C] - E_mu[Q_C]), which pushes Q_C *up* on actions
away from the data, so unseen actions look risky, never safe. (A public port got the
sign wrong; tests pin it.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cost_q_max(gamma_c: float, costs_terminate: bool) -> float:
    """The largest discounted cost, Q_C's unit: 1 when every cost ends the episode (Q_C is then a
    probability), else 1 / (1 - gamma_c)."""
    return 1.0 if costs_terminate else 1.0 / (1.0 - gamma_c)


def accident_target(
    cost: torch.Tensor, terminal: torch.Tensor, q_next_cost: torch.Tensor, gamma_c: float, q_max: float
) -> torch.Tensor:
    """c / q_max + gamma_c (1 - terminal) V_C(s'), clipped to [0, 1]: the normalised Bellman target.

    q_next_cost: target Q_C at s' as [E, B] (one next action: the max over members, the
    pessimistic choice for a safety critic) or [E, K, B] (K candidate next actions: the
    safest candidate, each judged by its most pessimistic member).
    """
    pessimistic = q_next_cost.max(dim=0).values
    v_next = pessimistic.min(dim=0).values if pessimistic.dim() == 2 else pessimistic
    target = cost / q_max + gamma_c * (1.0 - terminal) * v_next
    return target.clamp(0.0, 1.0)


def accident_bellman_loss(logits_data: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between sigmoid(logit) and the normalised target, summed over members.

    Q_C is a (normalised) probability, so its Bellman regression is a soft-label
    classification; its minimum is still at Q_C = target.
    """
    soft = target.unsqueeze(0).expand_as(logits_data)
    return F.binary_cross_entropy_with_logits(logits_data, soft, reduction="none").mean(dim=-1).sum()


def push_up_gap(q_data: torch.Tensor, q_off_data: torch.Tensor) -> torch.Tensor:
    """Per-member E_D[Q_C(s, a)] - E_mu[Q_C(s, a)]; *minimising* it raises Q_C off the data.

    q_data [E, B]; q_off_data [E, K, B]. Returns [E].
    """
    return q_data.mean(dim=-1) - q_off_data.mean(dim=(1, 2))
