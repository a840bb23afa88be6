"""The contract every goal-reaching task's env keeps (PointNav, Panda): shared test bodies."""

from __future__ import annotations

import numpy as np


def random_actions(env, steps: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, env.action_space.shape).astype(np.float32) for _ in range(steps)]


def check_info_keys(env, steps: int = 30) -> None:
    """`cost`, `accident`, `success` at reset and on every step; costs in {0, 1}, one with each accident."""
    obs, info = env.reset(seed=0)
    assert info == {"cost": 0.0, "accident": False, "success": False}
    assert env.observation_space.contains(obs)
    for act in random_actions(env, steps):
        obs, _, terminated, truncated, info = env.step(act)
        assert set(info) == {"cost", "accident", "success"}
        assert info["cost"] in (0.0, 1.0) and info["accident"] == (info["cost"] == 1.0)
        assert env.observation_space.contains(obs)
        if terminated or truncated:
            break


def trajectory(env, seed: int, steps: int) -> np.ndarray:
    """Observations of `steps` fixed random actions from reset(seed)."""
    obs, _ = env.reset(seed=seed)
    return np.stack([obs] + [env.step(act)[0] for act in random_actions(env, steps)])
