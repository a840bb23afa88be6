"""controller/constraint.py: the state-wise accident constraint binds where it must, and only there."""

from __future__ import annotations

import math

import torch

from safecritic.controller.constraint import StateWiseConstraint, summarize_multipliers
from safecritic.controller.policies import MixturePolicy

EPS = 0.05


def test_weights_keep_the_budget_where_feasible_and_minimise_risk_where_not():
    # Three candidates at three states: [C, B]; candidate 0 is the data's action.
    q_task = torch.tensor([[5.0, 5.0, 5.0],   # the best return, over the budget at states 0 and 2
                           [3.0, 3.0, 3.0],   # admissible at states 0 and 1
                           [1.0, 1.0, 1.0]])
    q_cost = torch.tensor([[0.30, 0.01, 0.90],
                           [0.02, 0.02, 0.40],
                           [0.01, 0.01, 0.20]])
    support = torch.ones(3, 3, dtype=torch.bool)
    c = StateWiseConstraint(EPS, beta=3.0)
    w = c.weights(q_task, q_cost, support, baseline=torch.full((3,), 3.0))
    assert w.feasible.tolist() == [True, True, False]
    assert w.weights[0] == 0.0  # binds: no weight for the data's action over the budget
    assert w.weights[1] > 1.0  # does not bind: a better-than-baseline action is weighted up
    assert 0.0 < w.weights[2] < 1.0  # infeasible: weighted down by its excess risk over the safest candidate
    assert torch.equal(w.unconstrained[:2], torch.full((2,), float(w.unconstrained[0])))  # the twin ignores the risk
    lam = c.multipliers(q_task, q_cost, w, support)
    # State 0: the smallest lambda for which Q_R - lambda Q_C prefers candidate 1 over candidate 0.
    assert math.isclose(float(lam[0]), (5.0 - 3.0) / (0.30 - 0.02), rel_tol=1e-5)
    assert float(lam[1]) == 0.0 and math.isinf(float(lam[2]))
    stats = summarize_multipliers(lam)
    assert math.isclose(float(stats["constraint_binds"]), 1 / 3, rel_tol=1e-5)
    assert math.isclose(float(stats["constraint_infeasible"]), 1 / 3, rel_tol=1e-5)
    assert float(stats["multiplier_where_binding"]) > 0 and float(stats["multiplier_where_free"]) == 0.0


def test_candidates_out_of_support_do_not_make_a_state_feasible():
    q_task = torch.tensor([[1.0], [9.0]])
    q_cost = torch.tensor([[0.5], [0.0]])  # the safe candidate is out of the data's support
    w = StateWiseConstraint(EPS, 3.0).weights(q_task, q_cost, torch.tensor([[True], [False]]), torch.zeros(1))
    assert not w.feasible[0] and w.weights[0] > 0  # infeasible: the data's action keeps a (risk-minimising) weight


def test_a_fitted_actor_obeys_the_constraint_where_it_binds_and_ignores_it_elsewhere():
    """A 1-D world whose data holds a fast action +0.8 and a slow one -0.8 at every state. The fast one
    pays more everywhere, but for s > 0 its risk exceeds the budget while the slow one is safe. The
    actor fitted by the constraint's weights must take the fast action where it is safe and the slow
    one where the constraint binds; its twin, weighted by return alone, keeps the fast one everywhere."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    actor, twin = MixturePolicy(1, 1, [32, 32], 2), MixturePolicy(1, 1, [32, 32], 2)
    opt = torch.optim.Adam([*actor.parameters(), *twin.parameters()], lr=3e-3)
    c = StateWiseConstraint(EPS, beta=3.0)
    for _ in range(1500):
        s = torch.rand(128, 1, generator=g) * 2 - 1
        fast = torch.rand(128, generator=g) < 0.5
        act = torch.where(fast, 0.8, -0.8).unsqueeze(1)
        cands = torch.stack([act, -act])  # the data's action, then the other one
        q_task = cands[..., 0]
        risky = (s[:, 0] > 0).float()
        q_cost = torch.stack([0.3 * risky * (act[:, 0] > 0), 0.3 * risky * (act[:, 0] < 0)])
        w = c.weights(q_task, q_cost, torch.ones(2, 128, dtype=torch.bool), torch.zeros(128))
        loss = -(w.weights * actor.log_prob(s, act)).sum() / w.weights.sum()
        loss = loss - (w.unconstrained * twin.log_prob(s, act)).sum() / w.unconstrained.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        probe = torch.tensor([[-0.6], [-0.3], [0.3], [0.6]])
        mode, twin_mode = actor.mode(probe)[:, 0], twin.mode(probe)[:, 0]
    assert (mode[:2] > 0.6).all(), mode  # the constraint does not bind: the better-paying action
    assert (mode[2:] < -0.6).all(), mode  # it binds: the action within the budget
    assert (twin_mode > 0.6).all(), twin_mode  # without the constraint: the risky action everywhere
