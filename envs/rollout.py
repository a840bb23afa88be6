"""Run a policy for an episode and summarise episodes: one loop for collection and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass
class Episode:
    """One episode, Minari-shaped: observations and infos have T+1 entries (reset first)."""

    observations: np.ndarray  # (T+1, obs_dim)
    actions: np.ndarray  # (T, act_dim)
    rewards: np.ndarray  # (T,)
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    costs: np.ndarray  # (T+1,) info["cost"]; costs[t + 1] belongs to transition t
    accidents: np.ndarray  # (T+1,) bool
    successes: np.ndarray  # (T+1,) bool
    seed: int | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())

    @property
    def cost(self) -> float:
        return float(self.costs[1:].sum())

    @property
    def accident(self) -> bool:
        return bool(self.accidents.any())

    @property
    def success(self) -> bool:
        return bool(self.successes.any())


def run_episode(env: gym.Env, policy: Policy, seed: int | None, max_steps: int | None = None) -> Episode:
    """Roll `policy` out from `env.reset(seed=seed)` until termination or truncation."""
    obs, info = env.reset(seed=seed)
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    costs, accidents, successes = [info.get("cost", 0.0)], [info.get("accident", False)], [info.get("success", False)]
    limit = max_steps if max_steps is not None else np.inf
    while True:
        action = np.asarray(policy(obs), dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        costs.append(info.get("cost", 0.0))
        accidents.append(info.get("accident", False))
        successes.append(info.get("success", False))
        truncated = truncated or len(actions) >= limit
        terms.append(terminated)
        truncs.append(truncated and not terminated)
        if terminated or truncated:
            break
    return Episode(
        observations=np.asarray(observations, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.float32),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terms, dtype=bool),
        truncations=np.asarray(truncs, dtype=bool),
        costs=np.asarray(costs, dtype=np.float64),
        accidents=np.asarray(accidents, dtype=bool),
        successes=np.asarray(successes, dtype=bool),
        seed=seed,
    )


def summarize(episodes: list[Episode]) -> dict[str, float]:
    """Success rate, accident rate, mean return, mean length and mean cost."""
    if not episodes:
        raise ValueError("no episodes to summarise")
    return {
        "episodes": len(episodes),
        "success_rate": float(np.mean([e.success for e in episodes])),
        "accident_rate": float(np.mean([e.accident for e in episodes])),
        "mean_return": float(np.mean([e.ret for e in episodes])),
        "mean_length": float(np.mean([e.length for e in episodes])),
        "mean_cost": float(np.mean([e.cost for e in episodes])),
    }


def evaluation_seed(base: int, index: int) -> int:
    """Seed of evaluation episode `index`: a stream disjoint from the data's (different base)."""
    return int(np.random.SeedSequence([base, index, 7]).generate_state(1)[0])
