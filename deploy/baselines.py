"""A scripted behaviour rolled out on exactly the certification's episodes.

A relative criterion ("mean return >= the cautious driver's") is only meaningful on the
same layouts: PointNav's return is mostly fixed by the start-goal distance, so a figure
taken on other seeds moves the bar by more than the gap it is meant to judge (cautious
scores 36.84 on the behaviour table's seeds and 37.11 on the certification's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from safecritic.configs.schema import Config, FaultsConfig
from safecritic.envs.behaviors import make_behavior
from safecritic.envs.faults import make_env
from safecritic.envs.rollout import Episode, evaluation_seed, run_episode


def behavior_runs_on_evaluation_episodes(env_id: str, name: str, episodes: int, base_seed: int,
                                         faults: FaultsConfig | None = None) -> list[Episode]:
    """Behaviour `name` on evaluation episodes 0..episodes-1 of `base_seed`, in index order: the
    resets `safecritic evaluate` uses, the same faults."""
    env = make_env(env_id, faults)
    try:
        runs = []
        for index in range(episodes):
            behavior = make_behavior(env_id, name)
            behavior.reset(np.random.default_rng([base_seed, index, 1]))  # its own noise, fixed per episode
            runs.append(run_episode(env, behavior.act, seed=evaluation_seed(base_seed, index)))
    finally:
        env.close()
    return runs


def return_gap(episodes: list[dict[str, Any]], reference: list[Episode]) -> dict[str, Any]:
    """Where a controller's mean-return gap to a reference behaviour on the same episodes comes
    from, so that a failed return bar says what to fix: the episodes the controller did not
    finish (PointNav: a timeout costs the goal bonus and the distance left, ~19 of return), the
    pace of the episodes both finished (0.01 per step), and those only the controller finished.
    The three contributions are per-episode means over all episodes and sum to the gap.

    `episodes`: the evaluation's per-episode records (index, seed, ret, success, accident,
    length); `reference`: the behaviour's runs on the same indices, in index order."""
    ours = sorted(episodes, key=lambda e: e["index"])
    if [e["index"] for e in ours] != list(range(len(reference))):
        raise ValueError(f"the reference covers episodes 0..{len(reference) - 1}; the evaluation has indices "
                         f"{[e['index'] for e in ours][:5]}...: roll the reference out on the evaluation's episodes")
    n = len(ours)
    diff = [e["ret"] - r.ret for e, r in zip(ours, reference)]
    unfinished = [i for i, e in enumerate(ours) if not e["success"]]
    both = [i for i, (e, r) in enumerate(zip(ours, reference)) if e["success"] and r.success]
    only_ours = [i for i, (e, r) in enumerate(zip(ours, reference)) if e["success"] and not r.success]

    def part(rows: list[int]) -> dict[str, Any]:
        return {"episodes": len(rows), "contribution": sum(diff[i] for i in rows) / n}

    return {
        "gap": sum(diff) / n,
        "unfinished": {**part(unfinished), "list": [
            {"index": ours[i]["index"], "seed": ours[i]["seed"], "outcome": "accident" if ours[i]["accident"] else "timeout",
             "return": ours[i]["ret"], "reference_return": reference[i].ret} for i in unfinished]},
        "both_finished": {**part(both),  # lengths None (valid JSON) when no episode was finished by both
                          "mean_length": float(np.mean([ours[i]["length"] for i in both])) if both else None,
                          "reference_mean_length": float(np.mean([reference[i].length for i in both])) if both else None},
        "only_controller_finished": part(only_ours),
    }


def check_reference_behaviors(config: Config) -> None:
    """Refuse unknown `mean_return_of_behavior` names before any training or evaluation is spent."""
    for env_id, criteria in config.deploy.criteria.items():
        if criteria.mean_return_of_behavior is not None:
            make_behavior(env_id, criteria.mean_return_of_behavior)  # ConfigError naming the known ones
