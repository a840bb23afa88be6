"""Faults as gymnasium wrappers, configured from YAML (`env.faults`), in any engine.

Each wrapper models one thing that goes wrong on a real robot. Their random numbers
come from a generator seeded by `reset(seed=...)`, so a faulty rollout is as
reproducible as a clean one.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from safecritic.configs.errors import SafecriticError
from safecritic.configs.schema import FaultsConfig
from safecritic.envs.registry import check_env_id, register_envs


def _wrapper_rng(seed: int | None, salt: int) -> np.random.Generator:
    return np.random.default_rng(None if seed is None else [seed, salt])


class ObservationNoise(gym.Wrapper):
    """Adds N(0, std^2) to every observation entry."""

    def __init__(self, env: gym.Env, std: float) -> None:
        super().__init__(env)
        self.std = std
        self._rng = _wrapper_rng(None, 1)

    def _noisy(self, obs: np.ndarray) -> np.ndarray:
        return (obs + self._rng.normal(0.0, self.std, size=np.shape(obs))).astype(np.asarray(obs).dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = _wrapper_rng(seed, 1)
        obs, info = self.env.reset(seed=seed, options=options)
        return self._noisy(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._noisy(obs), reward, terminated, truncated, info


class ObservationDelay(gym.Wrapper):
    """The agent sees the observation from `steps` steps ago (the first one repeats at reset)."""

    def __init__(self, env: gym.Env, steps: int) -> None:
        super().__init__(env)
        self._queue: deque[np.ndarray] = deque(maxlen=steps + 1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._queue.clear()
        self._queue.extend([obs] * self._queue.maxlen)
        return self._queue[0], info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._queue.append(obs)
        return self._queue[0], reward, terminated, truncated, info


class ActionDelay(gym.Wrapper):
    """The action reaches the actuators `steps` steps late (zeros until then)."""

    def __init__(self, env: gym.Env, steps: int) -> None:
        super().__init__(env)
        self._queue: deque[np.ndarray] = deque(maxlen=steps + 1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._queue.clear()
        zero = np.zeros(self.action_space.shape, dtype=self.action_space.dtype)
        self._queue.extend([zero] * (self._queue.maxlen - 1))
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self._queue.append(np.asarray(action))
        return self.env.step(self._queue.popleft())


class ActionScale(gym.ActionWrapper):
    """Actuator weakness (scale < 1) or excess gain (> 1), clipped to the action bounds."""

    def __init__(self, env: gym.Env, scale: float) -> None:
        super().__init__(env)
        self.scale = scale

    def action(self, action):
        scaled = np.asarray(action) * self.scale
        return np.clip(scaled, self.action_space.low, self.action_space.high).astype(self.action_space.dtype)


class SensorDropout(gym.Wrapper):
    """With probability `prob` per step the sensor repeats its previous reading."""

    def __init__(self, env: gym.Env, prob: float) -> None:
        super().__init__(env)
        self.prob = prob
        self._rng = _wrapper_rng(None, 2)
        self._last: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = _wrapper_rng(seed, 2)
        obs, info = self.env.reset(seed=seed, options=options)
        self._last = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._rng.random() < self.prob:
            obs = self._last
        self._last = obs
        return obs, reward, terminated, truncated, info


def scale_dynamics(env: gym.Env, mass_scale: float, damping_scale: float) -> None:
    """Scale the simulated mass and damping of `env` (ours, or any gymnasium MuJoCo env)."""
    base = env.unwrapped
    if hasattr(base, "set_dynamics"):
        base.set_dynamics(mass_scale, damping_scale)
        return
    model = getattr(base, "model", None)
    if model is not None and hasattr(model, "body_mass") and hasattr(model, "dof_damping"):
        if not hasattr(base, "_safecritic_nominal"):
            base._safecritic_nominal = (model.body_mass.copy(), model.dof_damping.copy())
        mass, damping = base._safecritic_nominal
        model.body_mass[:] = mass * mass_scale
        model.dof_damping[:] = damping * damping_scale
        import mujoco  # a gymnasium MuJoCo env: refresh the constants derived from masses

        mujoco.mj_setConst(model, base.data)
        return
    raise SafecriticError(
        f"env {env.spec.id if env.spec else type(base).__name__} does not support the dynamics-scale fault "
        "(mass_scale/damping_scale); set them to 1.0 for this env"
    )


def apply_faults(env: gym.Env, faults: FaultsConfig) -> gym.Env:
    """Wrap `env` with every fault that differs from its no-op default.

    Order matters and follows the signal path: actuator faults sit next to the plant,
    sensor faults next to the agent (noise, then dropout, then delay).
    """
    if faults.mass_scale != 1.0 or faults.damping_scale != 1.0:
        scale_dynamics(env, faults.mass_scale, faults.damping_scale)
    if faults.action_scale != 1.0:
        env = ActionScale(env, faults.action_scale)
    if faults.action_delay_steps:
        env = ActionDelay(env, faults.action_delay_steps)
    if faults.obs_noise_std:
        env = ObservationNoise(env, faults.obs_noise_std)
    if faults.sensor_dropout:
        env = SensorDropout(env, faults.sensor_dropout)
    if faults.obs_delay_steps:
        env = ObservationDelay(env, faults.obs_delay_steps)
    return env


def make_env(env_id: str, faults: FaultsConfig | None = None, **kwargs: Any) -> gym.Env:
    """gym.make with our ids registered, a clear error for unknown ids, and faults applied."""
    register_envs()
    check_env_id(env_id)
    # The passive env checker warns on every float64 reward; our envs are tested directly.
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    return apply_faults(env, faults) if faults is not None and faults.active() else env
