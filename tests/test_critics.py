"""critics/: signs of the conservative terms, targets, conformal bound, AUROC, detector."""

from __future__ import annotations

import math

import numpy as np
import torch

from safecritic.critics.conformal import conformal_threshold, false_alarm_rate
from safecritic.critics.cql import bellman_loss, cql_gap, task_target, uniform_log_density
from safecritic.critics.csc import accident_target, cost_q_max, push_up_gap
from safecritic.critics.metrics import auroc, fpr_at_tpr
from safecritic.critics.ood import DetectorLossConfig, OODDetector, detector_loss


def test_cql_step_lowers_sampled_q_and_raises_data_q():
    q_data = torch.zeros(2, 8, requires_grad=True)
    q_sampled = torch.zeros(2, 5, 8, requires_grad=True)
    log_density = torch.full((5, 8), uniform_log_density(2))
    gap = cql_gap(q_data, q_sampled, log_density)
    # flat Q: logsumexp over 5 equal values of 0 - log mu
    torch.testing.assert_close(gap, torch.full((2,), math.log(5) + 2 * math.log(2)))
    gap.sum().backward()
    assert (q_data.grad < 0).all()  # descending the loss raises Q on data ...
    assert (q_sampled.grad > 0).all()  # ... and lowers Q on sampled actions


def test_task_target_uses_min_and_stops_at_terminals():
    q_next = torch.tensor([[1.0, 5.0], [2.0, 3.0]])  # [members, B]
    y = task_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), q_next, gamma=0.5)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.5 * 1.0, 1.0]))


def test_accident_target_uses_max_terminal_and_range():
    q_next = torch.tensor([[0.2, 0.9, 0.9], [0.6, 0.1, 0.9]])
    y = accident_target(torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0.0, 1.0, 0.0]), q_next, 0.9, 1.0)
    torch.testing.assert_close(y, torch.tensor([0.9 * 0.6, 1.0, 1.0]))  # last one clipped from 1.81


def test_per_step_costs_are_normalised_by_their_maximum():
    """Costs that do not end the episode: Q_C = discounted cost / (1 / (1 - gamma_C)), in [0, 1], so
    a cost at every step forever is the fixed point 1, as a certain accident is where costs end it."""
    q_max = cost_q_max(0.9, False)
    y = accident_target(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([[1.0, 0.5]]), 0.9, q_max)
    torch.testing.assert_close(y, torch.tensor([0.1 + 0.9 * 1.0, 0.9 * 0.5]))


def test_safest_backup_takes_the_safest_candidate_by_its_worst_member():
    # [members=2, candidates=3, B=1]: candidate risks by worst member are 0.8, 0.3, 0.5
    q_next = torch.tensor([[[0.8], [0.1], [0.5]], [[0.2], [0.3], [0.4]]])
    y = accident_target(torch.tensor([0.0]), torch.tensor([0.0]), q_next, 0.5, 1.0)
    torch.testing.assert_close(y, torch.tensor([0.5 * 0.3]))
    assert cost_q_max(0.99, True) == 1.0 and math.isclose(cost_q_max(0.99, False), 100.0)


def test_csc_term_pushes_q_cost_up_off_the_data():
    """The sign a public CSC port got wrong: descending the loss must RAISE off-data Q_C."""
    q_data = torch.full((2, 8), 0.5, requires_grad=True)
    q_off = torch.full((2, 6, 8), 0.5, requires_grad=True)
    push_up_gap(q_data, q_off).sum().backward()
    assert (q_off.grad < 0).all()  # gradient descent increases off-data Q_C
    assert (q_data.grad > 0).all()


def test_bellman_loss_sums_members():
    q = torch.tensor([[1.0, 1.0], [3.0, 3.0]])
    assert bellman_loss(q, torch.tensor([2.0, 2.0])).item() == 2.0


def test_conformal_false_alarm_rate_is_bounded():
    g = torch.Generator().manual_seed(0)
    alpha, rates = 0.05, []
    for _ in range(50):
        calib = torch.randn(500, generator=g)
        test = torch.randn(2000, generator=g)
        rates.append(false_alarm_rate(test, conformal_threshold(calib, alpha)))
    # marginal guarantee: E[rate] <= alpha; the mean over 50 draws sits close to it
    assert np.mean(rates) <= alpha + 0.005
    assert np.mean(rates) >= alpha - 0.02  # and it is not vacuous
    assert conformal_threshold(torch.randn(10), 0.01) == math.inf  # n too small: never alarm


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 5, 40).astype(float), rng.integers(2, 8, 30).astype(float)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert math.isclose(auroc(neg, pos), brute)
    assert auroc([0.0], [1.0]) == 1.0 and auroc([1.0], [0.0]) == 0.0
    assert fpr_at_tpr(np.array([0.0, 0.5, 2.0]), np.arange(1.0, 21.0), 0.95) == 1 / 3


def test_detector_learns_to_flag_uniform_actions_and_far_states():
    """A toy task: the action is a fixed function of the state. A few hundred steps of
    training must separate data pairs from uniform actions and from far-away states."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(2048, 3)
    act = torch.tanh(obs[:, :2])
    det = OODDetector(3, 2, [64, 64], obs.min(0).values, obs.max(0).values)
    cfg = DetectorLossConfig(8, [0.1, 0.5], 2, 4, 1.0, 0.5, 1.5)
    opt = torch.optim.Adam(det.parameters(), lr=3e-3)
    for _ in range(400):
        idx = torch.randint(0, 2048, (128,), generator=g)
        loss, _ = detector_loss(det, obs[idx], act[idx], cfg, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        test_obs = torch.randn(1000, 3)
        in_dist = det.score(test_obs, torch.tanh(test_obs[:, :2]))
        uniform = det.score(test_obs, torch.rand(1000, 2) * 2 - 1)
        far = det.score(test_obs * 4 + 6, torch.tanh(test_obs[:, :2]))
    assert auroc(in_dist, uniform) > 0.9
    assert auroc(in_dist, far) > 0.95
