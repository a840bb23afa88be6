"""envs/: the PointNav contract, identical in MuJoCo and PyBullet."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from env_contract import check_info_keys, trajectory
from safecritic.configs import UnknownEnvError
from safecritic.envs.faults import make_env
from safecritic.envs.pointnav.task import Layout, PointNavParams

ENGINES = ["safecritic/PointNav-v0", "safecritic/PointNavBullet-v0"]
P = PointNavParams()


@pytest.fixture(params=ENGINES)
def env(request):
    env = make_env(request.param)
    yield env
    env.close()


def test_gymnasium_env_checker_passes(env):
    check_env(env.unwrapped, skip_render_check=True)


def test_twins_share_spaces_period_and_length():
    a, b = (make_env(i) for i in ENGINES)
    assert a.observation_space == b.observation_space
    assert a.action_space == b.action_space
    assert a.observation_space.shape == (12,) and a.action_space.shape == (2,)
    assert a.spec.max_episode_steps == b.spec.max_episode_steps == 200
    assert a.unwrapped.params == b.unwrapped.params
    assert a.unwrapped.params.control_period == 0.05


def test_info_keys_at_reset_and_every_step(env):
    check_info_keys(env)


def test_reset_seed_is_reproducible(env):
    np.testing.assert_array_equal(trajectory(env, 123, 30), trajectory(env, 123, 30))


def test_engines_agree_on_layout_and_dynamics():
    a, b = (make_env(i) for i in ENGINES)
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    np.testing.assert_array_equal(oa, ob)
    rng = np.random.default_rng(1)
    for _ in range(40):
        act = rng.uniform(-1, 1, 2).astype(np.float32)
        oa, *_ = a.step(act)
        ob, *_ = b.step(act)
    assert np.abs(oa[:2] - ob[:2]).max() < 0.05  # positions within 5 cm after 2 s


def _layout_with_hazard_ahead() -> Layout:
    return Layout(start=np.array([-1.5, 0.0]), goal=np.array([1.5, 0.0]),
                  hazards=np.array([[-0.6, 0.0], [0.0, 1.5], [0.0, -1.5]]))


def test_accident_costs_one_and_terminates(env):
    env.reset(seed=0, options={"layout": _layout_with_hazard_ahead()})
    for step in range(100):
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
        if terminated:
            break
    assert info["accident"] and info["cost"] == 1.0 and not info["success"]
    distance = np.linalg.norm(obs[6:8])  # the nearest hazard comes first
    assert distance < P.hazard_radius + P.agent_radius


def test_success_rewards_bonus_and_terminates(env):
    layout = Layout(start=np.array([-1.0, 0.0]), goal=np.array([1.0, 0.0]),
                    hazards=np.array([[0.0, 1.5], [0.0, -1.5], [-1.5, 1.5]]))
    env.reset(seed=0, options={"layout": layout})
    total = 0.0
    for _ in range(200):
        _, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
        total += reward
        if terminated:
            break
    assert info["success"] and info["cost"] == 0.0
    # 10 x distance travelled towards the goal + 10 bonus - 0.01 per step
    assert total == pytest.approx(10 * (2.0 - 0.3) + 10, abs=1.0)


def test_time_limit_truncates_at_200_steps(env):
    env.reset(seed=0, options={"layout": _layout_with_hazard_ahead()})
    for step in range(1, 201):
        _, _, terminated, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
        assert not terminated
        if truncated:
            break
    assert truncated and step == 200


def test_walls_hold_the_agent_inside(env):
    env.reset(seed=0, options={"layout": _layout_with_hazard_ahead()})
    for _ in range(150):
        obs, *_ = env.step(np.array([-1.0, -1.0], dtype=np.float32))
    assert np.all(np.abs(obs[:2]) <= P.arena_half)


def test_bad_actions_are_refused(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0], dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, dtype=np.float32))


def test_unknown_env_id_lists_known_ones():
    with pytest.raises(UnknownEnvError, match="safecritic/PointNav-v0"):
        make_env("safecritic/NoSuchTask-v0")


def test_gym_make_with_module_prefix_needs_no_prior_import():
    code = (
        "import gymnasium as gym\n"
        "for i in ['safecritic:safecritic/PointNav-v0', 'safecritic:safecritic/PointNavBullet-v0']:\n"
        "    e = gym.make(i); o, info = e.reset(seed=0); assert o.shape == (12,), o.shape\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
