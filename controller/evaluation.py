"""Roll a trained run's policy out in the simulator: a quick look at quality before export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from safecritic.configs.schema import FaultsConfig
from safecritic.controller.run_policies import numpy_policy
from safecritic.controller.training import load_trained
from safecritic.envs.faults import make_env
from safecritic.envs.rollout import Episode, evaluation_seed, run_episode, summarize


def rollout_policy(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    episodes: int,
    seed: int,
    faults: FaultsConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Episode]:
    env = make_env(env_id, faults)
    out = []
    for i in range(episodes):
        out.append(run_episode(env, policy, seed=evaluation_seed(seed, i)))
        if progress:
            progress(1)
    env.close()
    return out


def evaluate_run(
    run_dir: Path, which: str, env_ids: list[str] | None, episodes: int, seed: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Summaries of `which` policy ('actor' or 'bc') of a trained run in each env."""
    config, model, _ = load_trained(run_dir)
    policy = numpy_policy(model, which)
    results = {}
    for env_id in env_ids or [config.env.id]:
        results[env_id] = summarize(rollout_policy(policy, env_id, episodes, seed, config.env.faults, progress))
    return {"run_dir": str(run_dir), "policy": which, "episodes": episodes, "seed": seed, "results": results}
