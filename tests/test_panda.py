"""envs/panda: the PandaReach contract, identical in PyBullet and MuJoCo."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from env_contract import check_info_keys, trajectory
from safecritic.envs.faults import make_env, scale_dynamics
from safecritic.envs.panda.interface import PandaFeatures
from safecritic.envs.panda.task import (
    DQ, EE, HALF, OBSTACLE, Q, TARGET, PandaLayout, PandaReachParams, box_gap, sample_layout,
)
from safecritic.envs.panda.urdf import panda_model
from safecritic.envs.registry import behaviors_for, make_behavior

BULLET, MUJOCO = "safecritic/PandaReach-v0", "safecritic/PandaReachMj-v0"
ENGINES = [BULLET, MUJOCO]
P = PandaReachParams()
MODEL = panda_model()


@pytest.fixture(params=ENGINES)
def env(request):
    env = make_env(request.param)
    yield env
    env.close()


@pytest.fixture(scope="module")
def twins():
    envs = [make_env(i) for i in ENGINES]
    yield envs
    for e in envs:
        e.close()


def _layout(target_offset=(0.0, 0.0, 0.0), obstacle=((0.45, -0.6, 0.05), (0.05, 0.05, 0.05))) -> PandaLayout:
    """The home pose, a target relative to its end effector, an obstacle out of the way by default."""
    q0 = np.array(P.home)
    start = MODEL.forward(q0)[0]
    return PandaLayout(q0=q0, target=start + np.array(target_offset), obstacle_centre=np.array(obstacle[0]),
                       obstacle_half=np.array(obstacle[1]))


def _run(env, action, steps=200):
    """Steps a constant action until the episode ends; (last obs, total reward, steps, terminated, info)."""
    total = 0.0
    for step in range(1, steps + 1):
        obs, reward, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
        total += reward
        if terminated or truncated:
            break
    return obs, total, step, terminated, info


def test_twins_share_spaces_period_and_length(twins):
    a, b = twins
    assert a.observation_space == b.observation_space
    assert a.action_space == b.action_space
    assert a.observation_space.shape == (26,) and a.action_space.shape == (3,)
    assert a.spec.max_episode_steps == b.spec.max_episode_steps == 200
    assert a.unwrapped.params == b.unwrapped.params
    assert a.unwrapped.params.control_period == 0.05


def test_gymnasium_env_checker_passes(env):
    check_env(env.unwrapped, skip_render_check=True)


def test_info_keys_at_reset_and_every_step(env):
    check_info_keys(env)


def test_reset_seed_is_reproducible(env):
    first = trajectory(env, 123, 25)
    env.reset(seed=7)  # another episode in between changes nothing
    _run(env, [0.0, 0.0, -1.0], steps=30)
    np.testing.assert_array_equal(first, trajectory(env, 123, 25))
    assert not np.array_equal(env.reset(seed=124)[0], first[0])


def test_engines_agree_on_the_first_observation_and_the_urdf_kinematics(twins):
    a, b = twins
    for seed in range(5):
        oa, _ = a.reset(seed=seed)
        ob, _ = b.reset(seed=seed)
        la, lb = a.unwrapped.layout, b.unwrapped.layout
        for field in ("q0", "target", "obstacle_centre", "obstacle_half"):
            np.testing.assert_array_equal(getattr(la, field), getattr(lb, field))
        np.testing.assert_array_equal(oa[Q], ob[Q])
        np.testing.assert_array_equal(oa[DQ], ob[DQ])
        np.testing.assert_array_equal(oa[HALF], ob[HALF])
        assert np.abs(oa[EE] - ob[EE]).max() < 0.01  # measured: ~1e-8, both compile the same URDF
        assert np.abs(oa[EE] - MODEL.forward(la.q0)[0]).max() < 1e-3
        assert np.abs(oa[TARGET] - ob[TARGET]).max() < 0.01 and np.abs(oa[OBSTACLE] - ob[OBSTACLE]).max() < 0.01


def test_engines_agree_on_the_motion(twins):
    a, b = twins
    a.reset(seed=3)
    b.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(20):
        act = rng.uniform(-1, 1, 3).astype(np.float32)
        oa, *_ = a.step(act)
        ob, *_ = b.step(act)
    assert np.linalg.norm(oa[EE] - ob[EE]) < 0.01  # within 1 cm after 1 s


def test_layouts_put_the_box_across_the_start_target_line():
    rng = np.random.default_rng(0)
    flat = np.array([1.0, 1.0, 0.0])
    for _ in range(100):
        layout = sample_layout(rng, P)
        start = MODEL.forward(layout.q0)[0]
        centre, half = layout.obstacle_centre, layout.obstacle_half
        line = start + np.linspace(0, 1, 201)[:, None] * (layout.target - start)
        assert min(box_gap(x, centre, half) for x in line) == 0.0  # the straight reach hits the box
        assert centre[2] == pytest.approx(half[2])  # standing on the table
        for point in (start, layout.target):
            assert box_gap(point * flat, centre * flat, half * flat) >= P.clearance
        assert P.target_z[0] <= layout.target[2] <= P.target_z[1] and layout.target[0] >= P.target_x[0]
        assert np.sign(layout.target[1]) == -np.sign(layout.q0[0])  # start and target on opposite sides


def test_hitting_the_obstacle_costs_one_and_terminates(env):
    # A box 12 cm beside the end effector, across its path along +y.
    start = MODEL.forward(np.array(P.home))[0]
    box = (start + np.array([0.0, 0.15, -0.1]), np.array([0.08, 0.03, 0.15]))
    box[0][2] = box[1][2]
    env.reset(seed=0, options={"layout": _layout(target_offset=(0.0, 0.4, 0.0), obstacle=box)})
    obs, total, steps, terminated, info = _run(env, [0.0, 1.0, 0.0])
    assert terminated and info["accident"] and info["cost"] == 1.0 and not info["success"]
    assert steps < 20
    assert box_gap(obs[EE], obs[EE] + obs[OBSTACLE], obs[HALF]) < 0.1  # the hand, not the fingertip, touched
    # No reward penalty for the accident: the reward is the progress made, minus the step cost.
    assert total == pytest.approx(10 * (0.4 - np.linalg.norm(obs[TARGET])) - 0.01 * steps, abs=1e-4)


def test_touching_the_table_is_an_accident(env):
    env.reset(seed=0, options={"layout": _layout(target_offset=(0.1, 0.0, 0.0))})
    obs, _, steps, terminated, info = _run(env, [0.0, 0.0, -1.0])
    assert terminated and info["accident"] and info["cost"] == 1.0
    assert obs[EE][2] < 0.03  # the fingertips reach 7 mm below the end-effector point


def test_success_rewards_the_bonus_and_terminates(env):
    env.reset(seed=0, options={"layout": _layout(target_offset=(0.0, 0.0, 0.0))})
    obs, reward, terminated, _, info = env.step(np.zeros(3, dtype=np.float32))
    assert terminated and info["success"] and info["cost"] == 0.0 and not info["accident"]
    assert reward == pytest.approx(10.0 - 0.01, abs=0.01)

    env.reset(seed=0, options={"layout": _layout(target_offset=(0.1, 0.0, 0.05))})
    total = 0.0
    for steps in range(1, 201):
        obs, reward, terminated, _, info = env.step(np.clip(obs[TARGET] / 0.05, -1, 1).astype(np.float32))
        total += reward
        if terminated:
            break
    assert info["success"] and np.linalg.norm(obs[TARGET]) < P.success_radius
    start_distance = np.linalg.norm([0.1, 0.0, 0.05])
    assert total == pytest.approx(10 * (start_distance - np.linalg.norm(obs[TARGET])) + 10 - 0.01 * steps, abs=1e-4)


def test_time_limit_truncates_at_200_steps(env):
    env.reset(seed=0, options={"layout": _layout(target_offset=(0.1, 0.0, 0.0))})
    for step in range(1, 201):
        obs, _, terminated, truncated, _ = env.step(np.zeros(3, dtype=np.float32))
        assert not terminated
        if truncated:
            break
    assert truncated and step == 200
    assert np.abs(obs[DQ]).max() < 1e-3  # a zero command holds the arm still


def test_bad_actions_are_refused_and_large_ones_clipped(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0, 0.0], dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([0.0, np.inf, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2, dtype=np.float32))
    env.reset(seed=0)
    big = env.step(np.array([5.0, -3.0, 2.0]))[0]
    env.reset(seed=0)
    np.testing.assert_array_equal(big, env.step(np.array([1.0, -1.0, 1.0], dtype=np.float32))[0])


def test_set_dynamics_changes_the_motion(env):
    def motion(mass=1.0, damping=1.0):
        scale_dynamics(env, mass, damping)  # the fault wrapper's entry point
        first, _ = env.reset(seed=0, options={"layout": _layout(target_offset=(0.1, 0.0, 0.0))})
        held = _run(env, np.zeros(3), steps=10)[0]
        moved = _run(env, [0.0, 1.0, 0.0], steps=10)[0]
        return held[EE] - first[EE], moved[EE]

    sag, nominal = motion()
    assert np.abs(sag).max() < 1e-3  # the nominal servo holds the nominal arm
    heavy_sag, heavy = motion(mass=2.0)
    assert heavy_sag[2] < -0.02  # a heavier arm than the servo's model sags ...
    assert np.linalg.norm(heavy - nominal) > 0.02  # ... and moves differently
    _, damped = motion(damping=10.0)
    assert np.linalg.norm(damped - nominal) > 1e-3  # stiffer joints lag behind the command
    np.testing.assert_allclose(motion()[1], nominal, atol=1e-9)  # back to nominal
    with pytest.raises(ValueError, match="mass_scale"):
        env.unwrapped.set_dynamics(0.0, 1.0)


def test_bullet_world_rebuild_changes_nothing(monkeypatch):
    from safecritic.envs.panda.bullet_env import BulletArm

    def observations(rebuild_every):
        monkeypatch.setattr(BulletArm, "REBUILD_EVERY", rebuild_every)
        env = make_env(BULLET)
        env.unwrapped.set_dynamics(1.5, 2.0)
        out = []
        for seed in range(5):
            env.reset(seed=seed)
            out.append(_run(env, [0.3, 0.5, -0.2], steps=5)[0])
        env.close()
        return np.stack(out)

    np.testing.assert_array_equal(observations(2), observations(10**9))


def test_behaviours_are_registered_for_both_ids():
    for env_id in ENGINES:
        assert behaviors_for(env_id) == ("reckless", "cautious", "random")
    obs = np.zeros(26, dtype=np.float32)
    obs[TARGET] = [0.1, -0.3, -0.1]
    obs[OBSTACLE], obs[HALF] = [0.05, -0.15, -0.1], [0.08, 0.03, 0.12]
    for name in behaviors_for(BULLET):
        behavior = make_behavior(BULLET, name)
        behavior.reset(np.random.default_rng(0))
        action = behavior.act(obs)
        assert action.dtype == np.float32 and action.shape == (3,) and np.all(np.abs(action) <= 1.0)


def _rollouts(env_id: str, name: str, episodes: int = 10) -> dict[str, float]:
    env, behavior = make_env(env_id), make_behavior(env_id, name)
    success = accident = 0
    for episode in range(episodes):
        behavior.reset(np.random.default_rng([1, episode]))
        obs, _ = env.reset(seed=100 + episode)
        for _ in range(200):
            obs, _, terminated, truncated, info = env.step(behavior.act(obs))
            if terminated or truncated:
                break
        success += info["success"]
        accident += info["accident"]
    env.close()
    return {"success": success / episodes, "accident": accident / episodes}


def test_cautious_reaches_safely_where_reckless_crashes():
    # Measured on these episodes (PyBullet): reckless 1/10 success, 9/10 accidents; cautious
    # 10/10 success, 0 accidents; random 0 success, 3/10 accidents (the same in MuJoCo).
    reckless, cautious, rand = (_rollouts(BULLET, n) for n in ("reckless", "cautious", "random"))
    assert reckless["accident"] >= 0.6
    assert cautious["accident"] <= 0.1 < reckless["accident"]
    assert cautious["success"] >= 0.8
    assert rand["accident"] >= 0.2 and rand["success"] <= 0.2


def test_gym_make_with_module_prefix_needs_no_prior_import():
    code = (
        "import gymnasium as gym\n"
        "for i in ['safecritic:safecritic/PandaReach-v0', 'safecritic:safecritic/PandaReachMj-v0']:\n"
        "    e = gym.make(i); o, info = e.reset(seed=0); assert o.shape == (26,), o.shape\n"
        "    assert e.spec.max_episode_steps == 200\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "ok"


def test_features_are_exact_functions_of_the_observation():
    """The derived features equal the geometry the task is judged on, and script for export."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(8, 26)).astype(np.float32)
    obs[:, HALF] = np.abs(obs[:, HALF])
    out = torch.jit.script(PandaFeatures())(torch.from_numpy(obs)).numpy()
    assert out.shape == (8, 30)
    np.testing.assert_array_equal(out[:, :26], obs)
    flat = np.array([1.0, 1.0, 0.0])
    for row, o in zip(out, obs):
        assert row[26] == pytest.approx(np.linalg.norm(o[TARGET]), abs=1e-5)
        assert row[27] == pytest.approx(np.linalg.norm(o[TARGET][:2]), abs=1e-5)
        assert row[28] == pytest.approx(-(o[OBSTACLE][2] + o[HALF][2]), abs=1e-5)
        assert row[29] == pytest.approx(box_gap(np.zeros(3), o[OBSTACLE] * flat, o[HALF] * flat), abs=1e-5)
