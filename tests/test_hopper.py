"""envs/hopper: HopperVelocity-v0's contract (Hopper-v5 plus the velocity cost) and its runners."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from safecritic.configs.schema import FaultsConfig
from safecritic.envs.faults import make_env
from safecritic.envs.hopper import HOPPER_VELOCITY_LIMIT, HOPPER_X_VELOCITY_INDEX, hopper_velocity
from safecritic.envs.hopper.behaviors import POLICY_DIR, HOPPER_BEHAVIORS
from safecritic.envs.registry import behaviors_for

ENV = "safecritic/HopperVelocity-v0"


@pytest.fixture
def env():
    env = make_env(ENV)
    yield env
    env.close()


def test_spaces_and_length_are_hopper_v5s(env):
    ref = gym.make("Hopper-v5")
    assert env.observation_space == ref.observation_space
    assert env.action_space == ref.action_space
    assert env.spec.max_episode_steps == ref.spec.max_episode_steps == 1000


def test_reset_is_reproducible(env):
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cost_info_at_reset_and_every_step_follows_the_velocity_rule(env):
    obs, info = env.reset(seed=0)
    assert info["cost"] == 0.0 and info["accident"] is False and "success" not in info
    rng = np.random.default_rng(0)
    for _ in range(50):
        obs, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 3).astype(np.float32))
        expected = float(obs[HOPPER_X_VELOCITY_INDEX] > HOPPER_VELOCITY_LIMIT)
        assert info["cost"] == expected and info["accident"] is False
        if terminated or truncated:
            break


def _set_x_velocity(env, v: float) -> None:
    base = env.unwrapped
    qpos, qvel = base.data.qpos.copy(), base.data.qvel.copy()
    qvel[0] = v
    base.set_state(qpos, qvel)


def test_speed_over_the_limit_costs_but_does_not_end_the_episode(env):
    env.reset(seed=0)
    _set_x_velocity(env, 3.0)
    obs, _, terminated, truncated, info = env.step(np.zeros(3, dtype=np.float32))
    assert obs[HOPPER_X_VELOCITY_INDEX] > HOPPER_VELOCITY_LIMIT
    assert info["cost"] == 1.0 and not terminated and not truncated
    env.reset(seed=0)
    _set_x_velocity(env, 0.2)
    _, _, _, _, info = env.step(np.zeros(3, dtype=np.float32))
    assert info["cost"] == 0.0


def test_a_fall_ends_the_episode(env):
    env.reset(seed=0)
    base = env.unwrapped
    qpos, qvel = base.data.qpos.copy(), base.data.qvel.copy()
    qpos[1] = 0.3  # torso height under Hopper's healthy range
    base.set_state(qpos, qvel)
    _, _, terminated, _, info = env.step(np.zeros(3, dtype=np.float32))
    assert terminated and info["accident"] is False


def test_env_cost_and_labeler_are_one_rule():
    obs = np.zeros((3, 11), dtype=np.float32)
    obs[:, HOPPER_X_VELOCITY_INDEX] = [0.5, HOPPER_VELOCITY_LIMIT, 0.75]
    np.testing.assert_array_equal(hopper_velocity(obs, None, obs), [0.0, 0.0, 1.0])


def test_non_finite_action_is_refused_with_the_shape_named(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite with shape"):
        env.step(np.array([np.nan, 0.0, 0.0]))


def test_mass_fault_changes_the_motion():
    def first_steps(faults: FaultsConfig | None) -> np.ndarray:
        env = make_env(ENV, faults)
        env.reset(seed=1)
        out = [env.step(np.full(3, 0.5, dtype=np.float32))[0] for _ in range(10)]
        env.close()
        return np.stack(out)

    assert not np.allclose(first_steps(None), first_steps(FaultsConfig(mass_scale=2.0)), atol=1e-4)


def test_behaviours_are_the_tasks():
    assert set(behaviors_for(ENV)) == set(HOPPER_BEHAVIORS) == {"fast", "slow", "mixed"}


@pytest.mark.skipif(not (POLICY_DIR / "fast.pt").is_file() or not (POLICY_DIR / "slow.pt").is_file(),
                    reason="the runners are not trained (python -m safecritic.envs.hopper.train_behaviors)")
def test_fast_runner_breaks_the_limit_and_slow_keeps_within_it(env):
    def over_share(name: str) -> float:
        behavior = HOPPER_BEHAVIORS[name]()
        behavior.reset(np.random.default_rng(0))
        obs, _ = env.reset(seed=3)
        costs = []
        for _ in range(300):
            obs, _, terminated, truncated, info = env.step(behavior.act(obs))
            costs.append(info["cost"])
            if terminated or truncated:
                break
        return float(np.mean(costs))

    assert over_share("fast") > 0.5
    assert over_share("slow") < 0.1
