"""The dynamics ensemble (critics/dynamics.py): it beats the 'nothing changes' predictor on
held-out rows of a system it never saw, its cost head ranks the costly steps, and its
disagreement (MOPO's penalty) grows away from the data."""

from __future__ import annotations

import pytest
import torch

from safecritic.critics.dynamics import DynamicsEnsemble, fit_dynamics
from safecritic.envs.dataset import Transitions


def linear_system(n: int, seed: int = 0) -> Transitions:
    """s' = s + 0.1 B a + noise on a 4-d state, 2-d action; r = -|s|; cost where s_0 > 0.8
    (also terminal). States and actions in [-1, 1]: 'the data'."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 4, generator=g) * 2 - 1
    act = torch.rand(n, 2, generator=g) * 2 - 1
    b = torch.tensor([[1.0, 0.0, 0.5, -0.5], [0.0, 1.0, -0.5, 0.5]])
    nxt = obs + 0.1 * act @ b + 0.005 * torch.randn(n, 4, generator=g)
    cost = (nxt[:, 0] > 0.8).float()
    zeros = torch.zeros(n)
    return Transitions(obs=obs, act=act, rew=-nxt.norm(dim=1), cost=cost, next_obs=nxt, terminal=cost,
                       success=zeros, timeout=zeros, episode=torch.arange(n), behavior=torch.zeros(n, dtype=torch.long))


@pytest.fixture(scope="module")
def fitted() -> tuple[DynamicsEnsemble, Transitions, object]:
    torch.manual_seed(0)
    data = linear_system(4000)
    model = DynamicsEnsemble.for_data(data, members=5, elites=3, hidden=(64, 64))
    error = fit_dynamics(model, data, steps=1500, batch_size=128, lr=3e-3, seed=0)
    return model, data, error


def test_held_out_one_step_error_beats_standing_still(fitted):
    _, _, error = fitted
    assert error.next_obs_mse < 0.1 * error.next_obs_mse_no_change, error
    assert error.skill > 0.9
    assert error.reward_mse < 0.1 * error.reward_mse_mean
    assert error.cost_brier < 0.5 * error.cost_brier_base_rate
    assert len(error.elites) == 3 and len(set(error.elites)) == 3
    assert max(error.member_next_obs_mse[i] for i in error.elites) <= min(
        v for i, v in enumerate(error.member_next_obs_mse) if i not in error.elites)


def test_disagreement_grows_away_from_the_data(fitted):
    model, data, _ = fitted
    inside = model.disagreement(data.obs[:500], data.act[:500]).mean()
    outside = model.disagreement(data.obs[:500] * 6.0, data.act[:500] * 6.0).mean()
    assert outside > 3.0 * inside, (float(inside), float(outside))


def test_imagined_steps_follow_the_system_and_its_costs(fitted):
    model, data, _ = fitted
    g = torch.Generator().manual_seed(1)
    rows = torch.arange(1000)
    nxt, reward, cost_p, term_p = model.step(data.obs[rows], data.act[rows], g)
    assert nxt.shape == data.next_obs[rows].shape and reward.shape == cost_p.shape == term_p.shape == (1000,)
    assert (nxt - data.next_obs[rows]).abs().mean() < 0.25 * (data.obs[rows] - data.next_obs[rows]).abs().mean()
    costly = data.cost[rows] > 0
    assert costly.any() and cost_p[costly].mean() > 0.5 > cost_p[~costly].mean()
    assert ((cost_p >= 0) & (cost_p <= 1)).all() and torch.isfinite(nxt).all()


def test_members_are_batched_and_their_own(fitted):
    """One forward gives E different predictions (their own bootstraps and initialisations)."""
    model, data, _ = fitted
    mean, log_std, _, _ = model(data.obs[:8], data.act[:8])
    assert mean.shape == (5, 8, 5) and log_std.shape == (5, 8, 5)
    assert (mean[0] - mean[1]).abs().max() > 0
    assert (log_std <= model.max_log_std + 1e-6).all() and (log_std >= model.min_log_std - 1e-6).all()


def test_bad_elite_count_is_a_clear_error():
    with pytest.raises(ValueError, match="elites must be between 1 and members"):
        DynamicsEnsemble.for_data(linear_system(10), members=3, elites=4)


def test_mopo_penalty_is_the_disagreement_and_grows_away_from_the_data(fitted):
    from safecritic.critics.model_rollouts import imagine

    model, data, _ = fitted

    def push(obs):  # a fixed policy: full action along +x
        return torch.tensor([1.0, 0.0]).expand(obs.shape[0], 2)

    near, far = data.obs[:200] * 0.5, data.obs[:200] * 0.5 + torch.tensor([0.0, 4.0, 4.0, 0.0])
    for start in (near, far):
        plain = imagine(model, start, push, horizon=1, penalty=0.0, generator=torch.Generator().manual_seed(3))
        penalised = imagine(model, start, push, horizon=1, penalty=2.0, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(plain.rew - penalised.rew, 2.0 * model.disagreement(start, push(start)))
    gap = lambda start: model.disagreement(start, push(start)).mean()  # noqa: E731
    assert gap(far) > 3.0 * gap(near)


def test_rollouts_stop_where_the_model_expects_a_cost(fitted):
    """From states just short of the costly region (s_0 > 0.8), pushing +x: the cost is imagined,
    the rollout ends there, and nothing of that row follows."""
    from safecritic.critics.model_rollouts import imagine

    model, data, _ = fitted
    start = torch.tensor([[0.7, 0.0, 0.0, 0.0]]).repeat(50, 1)
    out = imagine(model, start, lambda o: torch.tensor([1.0, 0.0]).expand(o.shape[0], 2), horizon=10, penalty=1.0,
                  generator=torch.Generator().manual_seed(0))
    assert len(out) < 10 * 50 and out.terminal.sum() >= 45  # (nearly) every row ended, none ran on
    assert (out.cost[out.terminal > 0] > 0.5).float().mean() > 0.9
    with pytest.raises(ValueError, match="horizon must be >= 1 and penalty >= 0"):
        imagine(model, start, lambda o: o[:, :2], horizon=0, penalty=1.0)
