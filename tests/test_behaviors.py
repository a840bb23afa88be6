"""envs/behaviors: the data holds both what to do and what not to do."""

from __future__ import annotations

import numpy as np
import pytest

from safecritic.configs import ConfigError
from safecritic.envs.registry import make_behavior
from safecritic.envs.collect import collect_episodes, plan_behaviors
from safecritic.envs.rollout import summarize

N = 60  # enough to separate 25% from 5%; the full 200-episode table is bench/behaviors.py


@pytest.mark.parametrize("env_id", ["safecritic/PointNav-v0", "safecritic/PointNavBullet-v0"])
def test_reckless_crashes_and_cautious_does_not(env_id):
    reckless = summarize([e for _, e in collect_episodes(env_id, ["reckless"] * N, 99, 1)])
    cautious = summarize([e for _, e in collect_episodes(env_id, ["cautious"] * N, 99, 1)])
    assert reckless["accident_rate"] >= 0.25
    assert cautious["accident_rate"] <= 0.05
    assert cautious["success_rate"] >= 0.9
    assert reckless["mean_length"] < cautious["mean_length"]  # reckless is the fast one


def test_behaviours_are_deterministic_given_their_rng():
    b = make_behavior("safecritic/PointNav-v0", "reckless")
    obs = np.zeros(12, dtype=np.float32)
    obs[4:6] = [1.0, 0.0]
    b.reset(np.random.default_rng(0))
    first = [b.act(obs) for _ in range(3)]
    b.reset(np.random.default_rng(0))
    np.testing.assert_array_equal(first, [b.act(obs) for _ in range(3)])


def test_mixture_plan_has_exact_counts():
    plan = plan_behaviors({"reckless": 0.4, "cautious": 0.4, "random": 0.2}, 101, seed=0)
    assert len(plan) == 101
    counts = {n: plan.count(n) for n in set(plan)}
    assert counts == {"reckless": 40, "cautious": 41, "random": 20} or counts == {"reckless": 41, "cautious": 40, "random": 20}


def test_unknown_behaviour_is_named():
    with pytest.raises(ConfigError, match="known: reckless, cautious, random, zigzag"):
        make_behavior("safecritic/PointNav-v0", "daring")
