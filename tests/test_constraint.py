"""controller/constraint.py: the state-wise accident constraint binds where it must, and only there."""

from __future__ import annotations

import math

import torch

from safecritic.controller.constraint import StateWiseConstraint, summarize_multipliers
from safecritic.controller.policies import MixturePolicy

EPS = 0.05


def test_weights_keep_the_budget_where_feasible_and_minimise_risk_where_not():
    # Three candidates at three states: [C, B].
    q_task = torch.tensor([[5.0, 5.0, 5.0],   # the best return, over the budget at states 0 and 2
                           [3.0, 3.0, 3.0],   # admissible at states 0 and 1
                           [1.0, 1.0, 1.0]])
    q_cost = torch.tensor([[0.30, 0.01, 0.90],
                           [0.02, 0.02, 0.40],
                           [0.01, 0.01, 0.20]])
    support = torch.ones(3, 3, dtype=torch.bool)
    c = StateWiseConstraint(EPS, beta=3.0)
    w = c.weights(q_task, q_cost, support)
    assert w.feasible.tolist() == [True, True, False]
    assert w.weights[0, 0] == 0.0 and w.weights[1, 0] > w.weights[2, 0]  # binds: no weight over the budget
    assert w.weights[0, 1] > 0.9  # does not bind: the best return takes the weight
    assert w.weights[2, 2] > w.weights[1, 2] > w.weights[0, 2]  # infeasible: the least risk first
    torch.testing.assert_close(w.weights.sum(0), torch.ones(3))
    lam = c.multipliers(q_task, q_cost, w, support)
    # State 0: the smallest lambda for which Q_R - lambda Q_C prefers candidate 1 over candidate 0.
    assert math.isclose(float(lam[0]), (5.0 - 3.0) / (0.30 - 0.02), rel_tol=1e-5)
    assert float(lam[1]) == 0.0 and math.isinf(float(lam[2]))
    stats = summarize_multipliers(lam)
    assert math.isclose(float(stats["constraint_binds"]), 1 / 3, rel_tol=1e-5)
    assert math.isclose(float(stats["constraint_infeasible"]), 1 / 3, rel_tol=1e-5)
    assert float(stats["multiplier_where_binding"]) > 0 and float(stats["multiplier_where_free"]) == 0.0


def test_candidates_out_of_support_get_no_weight():
    q_task = torch.tensor([[9.0], [1.0]])
    q_cost = torch.tensor([[0.0], [0.0]])
    w = StateWiseConstraint(EPS, 3.0).weights(q_task, q_cost, torch.tensor([[False], [True]]))
    assert w.weights[:, 0].tolist() == [0.0, 1.0]


def test_a_fitted_actor_obeys_the_constraint_where_it_binds_and_ignores_it_elsewhere():
    """A 1-D world: the fast action +0.8 pays more everywhere, but for s > 0 its risk exceeds the
    budget and the slow action -0.8 is safe. The actor fitted by the constraint's weights must take
    the fast action where it is safe and the slow one where the constraint binds; its twin fitted
    by return alone keeps the fast one everywhere."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    actor, twin = MixturePolicy(1, 1, [32, 32], 2), MixturePolicy(1, 1, [32, 32], 2)
    opt = torch.optim.Adam([*actor.parameters(), *twin.parameters()], lr=3e-3)
    c = StateWiseConstraint(EPS, beta=3.0)
    fast, slow = torch.tensor(0.8), torch.tensor(-0.8)
    for _ in range(600):
        s = torch.rand(128, 1, generator=g) * 2 - 1
        cands = torch.stack([fast.expand(128, 1), slow.expand(128, 1)])  # [C, B, A]
        q_task = cands[..., 0]
        q_cost = torch.stack([0.3 * (s[:, 0] > 0).float(), torch.zeros(128)])
        support = torch.ones(2, 128, dtype=torch.bool)
        w = c.weights(q_task, q_cost, support)
        loss = -(w.weights * actor.log_prob(s, cands)).sum(0).mean()
        loss = loss - (c.unconstrained(q_task, support) * twin.log_prob(s, cands)).sum(0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        probe = torch.tensor([[-0.6], [-0.3], [0.3], [0.6]])
        mode, twin_mode = actor.mode(probe)[:, 0], twin.mode(probe)[:, 0]
    assert (mode[:2] > 0.6).all(), mode  # the constraint does not bind: the better-paying action
    assert (mode[2:] < -0.6).all(), mode  # it binds: the action within the budget
    assert (twin_mode > 0.6).all(), twin_mode  # without the constraint: the risky action everywhere
