"""envs/faults.py: each fault does what it says, in both engines, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from safecritic.configs.schema import FaultsConfig
from safecritic.envs.faults import (
    ActionDelay,
    ActionScale,
    ObservationDelay,
    ObservationNoise,
    SensorDropout,
    make_env,
)
from safecritic.envs.pointnav.task import Layout

ENGINES = ["safecritic/PointNav-v0", "safecritic/PointNavBullet-v0"]
OPEN = Layout(start=np.array([-1.5, 0.0]), goal=np.array([1.5, 0.0]),
              hazards=np.array([[0.0, 1.5], [0.0, -1.5], [-1.5, 1.5]]))
PUSH = np.array([1.0, 0.0], dtype=np.float32)


def _speed_after(env, steps=10, action=PUSH) -> float:
    env.reset(seed=0, options={"layout": OPEN})
    for _ in range(steps):
        obs, *_ = env.step(action)
    return float(obs[2])


@pytest.mark.parametrize("env_id", ENGINES)
def test_action_scale_weakens_actuators(env_id):
    nominal = _speed_after(make_env(env_id))
    weak = _speed_after(make_env(env_id, FaultsConfig(action_scale=0.5)))
    assert weak == pytest.approx(0.5 * nominal, rel=0.02)


@pytest.mark.parametrize("env_id", ENGINES)
def test_mass_and_damping_scale_change_dynamics(env_id):
    nominal = _speed_after(make_env(env_id), steps=3)
    heavy = _speed_after(make_env(env_id, FaultsConfig(mass_scale=3.0)), steps=3)
    assert heavy < 0.6 * nominal  # three times the mass accelerates far slower
    top = _speed_after(make_env(env_id), steps=40)
    draggy = _speed_after(make_env(env_id, FaultsConfig(damping_scale=2.0)), steps=40)
    assert draggy == pytest.approx(top / 2.0, rel=0.05)  # terminal speed = force / damping


@pytest.mark.parametrize("env_id", ENGINES)
def test_observation_noise_has_its_std_and_is_seeded(env_id):
    clean = make_env(env_id)
    noisy = make_env(env_id, FaultsConfig(obs_noise_std=0.1))
    assert isinstance(noisy, ObservationNoise)
    diffs = []
    for seed in range(30):
        diffs.append(noisy.reset(seed=seed)[0] - clean.reset(seed=seed)[0])
    assert np.std(np.concatenate(diffs)) == pytest.approx(0.1, rel=0.2)
    np.testing.assert_array_equal(noisy.reset(seed=3)[0], noisy.reset(seed=3)[0])


def test_observation_delay_shows_old_observations():
    clean = make_env(ENGINES[0])
    delayed = make_env(ENGINES[0], FaultsConfig(obs_delay_steps=2))
    assert isinstance(delayed, ObservationDelay)
    first_clean, _ = clean.reset(seed=0, options={"layout": OPEN})
    first_delayed, _ = delayed.reset(seed=0, options={"layout": OPEN})
    np.testing.assert_array_equal(first_clean, first_delayed)
    clean_obs = [first_clean] + [clean.step(PUSH)[0] for _ in range(5)]
    delayed_obs = [first_delayed] + [delayed.step(PUSH)[0] for _ in range(5)]
    for t in range(2, 6):
        np.testing.assert_array_equal(delayed_obs[t], clean_obs[t - 2])


def test_action_delay_applies_actions_late():
    delayed = make_env(ENGINES[0], FaultsConfig(action_delay_steps=3))
    assert isinstance(delayed, ActionDelay)
    delayed.reset(seed=0, options={"layout": OPEN})
    speeds = [delayed.step(PUSH)[0][2] for _ in range(5)]
    assert speeds[0] == speeds[1] == speeds[2] == 0.0
    assert speeds[3] > 0.0


def test_sensor_dropout_repeats_readings():
    env = make_env(ENGINES[0], FaultsConfig(sensor_dropout=0.5))
    assert isinstance(env, SensorDropout)
    env.reset(seed=0, options={"layout": OPEN})
    obs = [env.step(PUSH)[0] for _ in range(40)]
    repeats = sum(np.array_equal(a, b) for a, b in zip(obs, obs[1:]))
    assert 8 <= repeats <= 32


def test_faults_stack_in_signal_order():
    env = make_env(ENGINES[1], FaultsConfig(action_scale=0.8, obs_noise_std=0.01, obs_delay_steps=1))
    assert isinstance(env, ObservationDelay)
    assert isinstance(env.env, ObservationNoise)
    assert isinstance(env.env.env, ActionScale)
