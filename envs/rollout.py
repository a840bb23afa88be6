"""The one rollout loop: a batch of envs stepped in lockstep, one batched policy call per step.

Collection, evaluation and the reference behaviours all run through `run_lockstep`. A
batched call matters for a learned controller (a batch-1 call costs more than a simulator
step, so one env per call would leave the simulator idle); scripted behaviours are wrapped
to the same interface (`per_row`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np

BatchPolicy = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]
"""(observations [n, obs_dim] of the still running envs, their indices [n]) -> (actions [n, act_dim],
per-row records [n, R] or None): records are what a controller reports about its decision."""
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
    records: np.ndarray | None = None  # (T, R): the controller's record of each step, when it gives one
    reports_success: bool = False  # whether the env reports info["success"] at all

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


class _Recorder:
    """One env's episode as it happens."""

    def __init__(self, obs: np.ndarray, info: dict, seed: int | None) -> None:
        self.seed = seed
        self.obs, self.act, self.rew, self.term, self.trunc, self.records = [obs], [], [], [], [], []
        self.costs, self.accidents, self.successes = [float(info.get("cost", 0.0))], [bool(info.get("accident", False))], [
            bool(info.get("success", False))]
        self.reports_success = "success" in info

    def step(self, action, record, obs, reward, terminated, truncated, info: dict) -> None:
        cost = float(info.get("cost", 0.0))
        self.obs.append(obs)
        self.act.append(action)
        self.rew.append(float(reward))
        self.term.append(bool(terminated))
        self.trunc.append(bool(truncated) and not terminated)
        self.costs.append(cost)
        # An env without an `accident` info: a cost that ends the episode is one.
        self.accidents.append(bool(info.get("accident", terminated and cost > 0)))
        self.successes.append(bool(info.get("success", False)))
        self.reports_success |= "success" in info
        if record is not None:
            self.records.append(record)

    def episode(self) -> Episode:
        return Episode(
            observations=np.asarray(self.obs, dtype=np.float32),
            actions=np.asarray(self.act, dtype=np.float32),
            rewards=np.asarray(self.rew, dtype=np.float64),
            terminations=np.asarray(self.term, dtype=bool),
            truncations=np.asarray(self.trunc, dtype=bool),
            costs=np.asarray(self.costs, dtype=np.float64),
            accidents=np.asarray(self.accidents, dtype=bool),
            successes=np.asarray(self.successes, dtype=bool),
            seed=self.seed,
            records=np.asarray(self.records, dtype=np.float32) if self.records else None,
            reports_success=self.reports_success,
        )


def run_lockstep(envs: Sequence[gym.Env], seeds: Sequence[int | None], policy: BatchPolicy,
                 max_steps: int | None = None) -> list[Episode]:
    """One episode per env, from `reset(seed=seeds[i])`, until each terminates or truncates
    (or reaches `max_steps`); the still running envs share one policy call per step."""
    if len(envs) != len(seeds):
        raise ValueError(f"{len(envs)} envs but {len(seeds)} seeds")
    first = [env.reset(seed=seed) for env, seed in zip(envs, seeds)]
    recorders = [_Recorder(obs, info, seed) for (obs, info), seed in zip(first, seeds)]
    obs = np.stack([np.asarray(o, dtype=np.float32) for o, _ in first])
    active = np.ones(len(envs), dtype=bool)
    limit = max_steps if max_steps is not None else np.inf
    while active.any():
        rows = np.flatnonzero(active)
        actions, records = policy(obs[rows], rows)
        for j, k in enumerate(rows):
            action = np.asarray(actions[j], dtype=np.float32)
            o, reward, terminated, truncated, info = envs[k].step(action)
            recorder = recorders[k]
            truncated = bool(truncated) or len(recorder.act) + 1 >= limit
            recorder.step(action, None if records is None else records[j], o, reward, terminated, truncated, info)
            obs[k] = o
            if terminated or truncated:
                active[k] = False
    return [r.episode() for r in recorders]


def per_row(policies: Sequence[Policy]) -> BatchPolicy:
    """A batched policy from one single-observation policy per env (scripted behaviours)."""

    def act(obs: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, None]:
        return np.stack([np.asarray(policies[k](o), dtype=np.float32) for o, k in zip(obs, rows)]), None

    return act


def run_episode(env: gym.Env, policy: Policy, seed: int | None, max_steps: int | None = None) -> Episode:
    """One episode of a single-observation policy."""
    return run_lockstep([env], [seed], per_row([policy]), max_steps)[0]


def summarize(episodes: list[Episode]) -> dict[str, float]:
    """Success rate, accident rate, mean return, mean length and mean cost (and whether the env
    reports success at all: a success rate of 0 means nothing where it does not)."""
    if not episodes:
        raise ValueError("no episodes to summarise")
    return {
        "episodes": len(episodes),
        "success_rate": float(np.mean([e.success for e in episodes])),
        "accident_rate": float(np.mean([e.accident for e in episodes])),
        "mean_return": float(np.mean([e.ret for e in episodes])),
        "mean_length": float(np.mean([e.length for e in episodes])),
        "mean_cost": float(np.mean([e.cost for e in episodes])),
        "reports_success": any(e.reports_success for e in episodes),
    }


def evaluation_seed(base: int, index: int) -> int:
    """Seed of evaluation episode `index`: a stream disjoint from the data's (different base)."""
    return int(np.random.SeedSequence([base, index, 7]).generate_state(1)[0])
