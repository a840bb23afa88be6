"""The state-wise accident constraint on the actor, feasibility-guided (FISOR, Zheng et al. 2024).

At every state the actor is fitted to a set of in-support candidate actions (the data's
action, the priors' component means, its own samples, the safe actions), each weighted:

- **feasible** state (some in-support candidate has Q_C(s, a) <= epsilon): the weights are
  a softmax of beta * Q_R / sigma_R over the admissible candidates only: maximise return
  inside the feasible set, and give no weight at all to an action over the budget;
- **infeasible** state (none has): a softmax of -beta * Q_C / sigma_C over the in-support
  candidates: minimise the risk.

Q_C is the risk of following the actor afterwards (critics/csc.py), so the constraint
holds for the actor's own future, not for an ideal controller's. The fit is in-sample
(weighted maximum likelihood on candidates from the behaviour's support), so the actor
stays where the critics have data: the KL to the behaviour prior is bounded by
construction and measured (`kl_to_prior`), not assumed. sigma_R and sigma_C are the
batch's mean spread of Q_R and Q_C across candidates, so beta is unit-free.

Each state's choice is a constrained problem over its candidates; its Lagrange multiplier
is reported: lambda*(s) = 0 where the best candidate by return is admissible (the
constraint does not bind), else the smallest lambda that makes an admissible candidate
best under Q_R - lambda Q_C (Q_R units per unit of Q_C), infinite where the state is
infeasible. Two alternatives were built and measured side by side on the same data
(bench/constraints.py): a learned multiplier lambda(s) (Feasible Actor-Critic) and a
penalty on the positive part of Q_C - epsilon; docs/design.md has the figures.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

NEG_INF = float("-inf")


class Weights(NamedTuple):
    """Per-state weights over candidates [C, B] (each column sums to 1) and what they say."""

    weights: torch.Tensor
    feasible: torch.Tensor  # [B] bool: some in-support candidate is within the budget
    admissible: torch.Tensor  # [C, B] bool


def spread(values: torch.Tensor) -> torch.Tensor:
    """The batch's mean spread of a value across candidates (values [C, B]): the softmax's unit."""
    return values.std(dim=0).mean().clamp_min(1e-6)


class StateWiseConstraint:
    """epsilon: the accident budget (Q_C units); beta: the weights' sharpness (unit-free)."""

    def __init__(self, epsilon: float, beta: float) -> None:
        self.epsilon, self.beta = float(epsilon), float(beta)

    def weights(self, q_task: torch.Tensor, q_cost: torch.Tensor, in_support: torch.Tensor) -> Weights:
        """q_task, q_cost [C, B] (pessimistic over members); in_support [C, B] bool (OOD score within the threshold)."""
        admissible = in_support & (q_cost <= self.epsilon)
        feasible = admissible.any(dim=0)
        inside = torch.where(admissible, self.beta * q_task / spread(q_task), NEG_INF)
        outside = torch.where(in_support, -self.beta * q_cost / spread(q_cost), NEG_INF)
        logits = torch.where(feasible.unsqueeze(0), inside, outside)
        return Weights(torch.softmax(logits, dim=0), feasible, admissible)

    def unconstrained(self, q_task: torch.Tensor, in_support: torch.Tensor) -> torch.Tensor:
        """The same fit by return alone (the `unconstrained` ablation)."""
        return torch.softmax(torch.where(in_support, self.beta * q_task / spread(q_task), NEG_INF), dim=0)

    def multipliers(self, q_task: torch.Tensor, q_cost: torch.Tensor, w: Weights, in_support: torch.Tensor) -> torch.Tensor:
        """lambda*(s) [B]: 0 where the best in-support candidate by Q_R is admissible, +inf where no
        candidate is, else max over the better-paying inadmissible candidates c of
        (Q_R(c) - Q_R(c*)) / (Q_C(c) - Q_C(c*)), c* the best admissible one."""
        best_ok = torch.where(w.admissible, q_task, NEG_INF).max(dim=0)
        star = best_ok.indices
        r_star = best_ok.values
        c_star = q_cost.gather(0, star.unsqueeze(0)).squeeze(0)
        better = in_support & ~w.admissible & (q_task > r_star.unsqueeze(0))
        ratio = (q_task - r_star) / (q_cost - c_star).clamp_min(1e-6)
        lam = torch.where(better, ratio, torch.zeros_like(ratio)).max(dim=0).values
        return torch.where(w.feasible, lam, float("inf"))


def summarize_multipliers(lam: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where the constraint binds, and how hard (metrics; scalars)."""
    finite = torch.isfinite(lam)
    binds = finite & (lam > 0)
    zero = torch.zeros(())
    return {
        "constraint_infeasible": (~finite).float().mean(),
        "constraint_binds": binds.float().mean(),
        "multiplier_where_binding": lam[binds].mean() if bool(binds.any()) else zero,
        "multiplier_where_free": lam[finite & ~binds].abs().mean() if bool((finite & ~binds).any()) else zero,
    }
