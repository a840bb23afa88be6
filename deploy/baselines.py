"""A scripted behaviour rolled out on exactly the certification's episodes.

A relative criterion ("mean return >= the cautious driver's") is only meaningful on the
same layouts: PointNav's return is mostly fixed by the start-goal distance, so a figure
taken on other seeds moves the bar by more than the gap it is meant to judge (cautious
scores 36.84 on the behaviour table's seeds and 37.11 on the certification's).
"""

from __future__ import annotations

import numpy as np

from safecritic.configs.schema import Config, FaultsConfig
from safecritic.envs.behaviors import make_behavior
from safecritic.envs.faults import make_env
from safecritic.envs.rollout import evaluation_seed, run_episode, summarize


def behavior_on_evaluation_episodes(env_id: str, name: str, episodes: int, base_seed: int,
                                    faults: FaultsConfig | None = None) -> dict[str, float]:
    """Summary (success, accidents, mean return, ...) of behaviour `name` on evaluation
    episodes 0..episodes-1 of `base_seed`: the resets `safecritic evaluate` uses, the same faults."""
    env = make_env(env_id, faults)
    try:
        runs = []
        for index in range(episodes):
            behavior = make_behavior(env_id, name)
            behavior.reset(np.random.default_rng([base_seed, index, 1]))  # its own noise, fixed per episode
            runs.append(run_episode(env, behavior.act, seed=evaluation_seed(base_seed, index)))
    finally:
        env.close()
    return summarize(runs)


def check_reference_behaviors(config: Config) -> None:
    """Refuse unknown `mean_return_of_behavior` names before any training or evaluation is spent."""
    for env_id, criteria in config.deploy.criteria.items():
        if criteria.mean_return_of_behavior is not None:
            make_behavior(env_id, criteria.mean_return_of_behavior)  # ConfigError naming the known ones
