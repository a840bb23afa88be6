"""The state-wise accident constraint on the actor, feasibility-guided (FISOR, Zheng et al. 2024),
in the in-sample, advantage-weighted form (AWR / IQL's policy extraction).

The actor is fitted by weighted maximum likelihood to the successful episodes' actions; each
action's weight comes from the critics at its state. A state is **feasible** when some
in-support candidate (the data's action, pi_ref's component means, the safe actions) has
Q_C(s, a) <= epsilon:

- feasible: weight exp(beta A_R / sigma_R) if the data's action is within the budget, 0 if
  it is over it: maximise return inside the feasible set, never imitate an action over it;
- infeasible: weight exp(-beta (Q_C(s, a) - min_c Q_C(s, c)) / sigma_C): minimise the risk.

A_R is the action's Q_R against pi_ref's value at s. Q_C is the risk of following the actor
afterwards (critics/csc.py), so the constraint holds for the actor's own future. The fit is
in-sample, so the actor stays on the data's support (the KL constraint): beta -> 0 gives
back BC on the successful episodes, and `kl_to_prior` measures the distance, not assumed.
sigma_R and sigma_C are the batch's spreads, so beta is unit-free; weights are clipped at
MAX_WEIGHT.

Each state's choice among its candidates is a constrained problem; its Lagrange multiplier
is reported: lambda*(s) = 0 where the best candidate by return is admissible (the
constraint does not bind), else the smallest lambda that makes an admissible candidate
best under Q_R - lambda Q_C (Q_R units per unit of Q_C), infinite where the state is
infeasible. The alternatives built and measured on the same data (bench/constraints.py):
a learned multiplier lambda(s) (Feasible Actor-Critic) and a penalty on the positive part
of Q_C - epsilon; docs/design.md has the figures.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

NEG_INF = float("-inf")


class Weights(NamedTuple):
    """The data actions' weights [B] and what the constraint says about each state."""

    weights: torch.Tensor  # [B]: the constrained actor's (0 for an action over the budget where feasible)
    unconstrained: torch.Tensor  # [B]: the twin's, by return alone
    feasible: torch.Tensor  # [B] bool: some in-support candidate is within the budget
    admissible: torch.Tensor  # [C, B] bool


MAX_WEIGHT = 20.0  # AWR's and IQL's clip of exp(beta A): one state cannot dominate a batch


def spread(values: torch.Tensor) -> torch.Tensor:
    """A value's spread over the batch: the advantages' unit, so that beta is unit-free."""
    return values.std(correction=0).clamp_min(1e-6)  # population std: defined for one element too


class StateWiseConstraint:
    """epsilon: the accident budget (Q_C units); beta: the weights' sharpness (unit-free)."""

    def __init__(self, epsilon: float, beta: float) -> None:
        self.epsilon, self.beta = float(epsilon), float(beta)

    def weights(self, q_task: torch.Tensor, q_cost: torch.Tensor, in_support: torch.Tensor,
                baseline: torch.Tensor) -> Weights:
        """q_task, q_cost [C, B] (pessimistic over members; candidate 0 the data's action); in_support
        [C, B] bool (OOD score within the threshold); baseline [B]: the return the advantage is taken
        against (the behaviour prior's value at s)."""
        admissible = in_support & (q_cost <= self.epsilon)
        feasible = admissible.any(dim=0)
        advantage = q_task[0] - baseline
        unconstrained = torch.exp(self.beta * advantage / spread(advantage)).clamp(max=MAX_WEIGHT)
        excess = q_cost[0] - torch.where(in_support, q_cost, float("inf")).min(dim=0).values
        outside = torch.exp(-self.beta * excess / spread(q_cost)).clamp(max=MAX_WEIGHT)
        inside = torch.where(admissible[0], unconstrained, torch.zeros_like(unconstrained))
        return Weights(torch.where(feasible, inside, outside), unconstrained, feasible, admissible)

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
