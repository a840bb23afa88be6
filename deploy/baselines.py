"""A scripted behaviour rolled out on exactly the certification's episodes.

A relative criterion ("mean return >= a reference behaviour's") is only meaningful on the
same episodes: a task's return depends mostly on its layout (start, goal, obstacles), so a
figure taken on other seeds moves the bar by more than the gap it is meant to judge (the
shipped task's reference scores 36.84 on one set of 200 episodes and 37.11 on another).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from safecritic.configs.schema import FaultsConfig
from safecritic.envs.registry import make_behavior
from safecritic.envs.faults import make_env
from safecritic.envs.rollout import Episode, evaluation_seed, per_row, run_lockstep


def behavior_runs_on_evaluation_episodes(env_id: str, name: str, episodes: int, base_seed: int,
                                         faults: FaultsConfig | None = None, chunk: int = 10) -> list[Episode]:
    """Behaviour `name` on evaluation episodes 0..episodes-1 of `base_seed`, in index order: the
    resets `safecritic evaluate` uses, the same faults, the same lockstep loop."""
    envs = [make_env(env_id, faults) for _ in range(min(chunk, episodes))]
    runs: list[Episode] = []
    try:
        for start in range(0, episodes, chunk):
            indices = range(start, min(start + chunk, episodes))
            behaviors = []
            for index in indices:
                behavior = make_behavior(env_id, name)
                behavior.reset(np.random.default_rng([base_seed, index, 1]))  # its own noise, fixed per episode
                behaviors.append(behavior)
            runs += run_lockstep(envs[: len(indices)], [evaluation_seed(base_seed, i) for i in indices],
                                 per_row([b.act for b in behaviors]))
    finally:
        for env in envs:
            env.close()
    return runs


def episode_records(runs: list[Episode]) -> list[dict[str, Any]]:
    """Rolled-out episodes as the evaluation's per-episode records (index order)."""
    return [{"index": i, "seed": e.seed, "ret": e.ret, "cost": e.cost, "success": e.success, "accident": e.accident,
             "length": e.length} for i, e in enumerate(runs)]


def return_gap(episodes: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a controller's mean-return gap to a reference on the same episodes comes from, so
    that a failed return bar says what to fix: the episodes the controller did not finish
    (did not succeed), the pace of the episodes both finished, and those only the controller
    finished (for a task without a success signal, every episode counts as unfinished).
    The three contributions are per-episode means over all episodes and sum to the gap.

    `episodes` and `reference`: per-episode records (index, seed, ret, success, accident, length)
    of the controller and of the reference on the same indices; the reference's in index order."""
    ours = sorted(episodes, key=lambda e: e["index"])
    if [e["index"] for e in ours] != list(range(len(reference))):
        raise ValueError(f"the reference covers episodes 0..{len(reference) - 1}; the evaluation has indices "
                         f"{[e['index'] for e in ours][:5]}...: roll the reference out on the evaluation's episodes")
    n = len(ours)
    diff = [e["ret"] - r["ret"] for e, r in zip(ours, reference)]
    unfinished = [i for i, e in enumerate(ours) if not e["success"]]
    both = [i for i, (e, r) in enumerate(zip(ours, reference)) if e["success"] and r["success"]]
    only_ours = [i for i, (e, r) in enumerate(zip(ours, reference)) if e["success"] and not r["success"]]

    def part(rows: list[int]) -> dict[str, Any]:
        return {"episodes": len(rows), "contribution": sum(diff[i] for i in rows) / n}

    return {
        "gap": sum(diff) / n,
        "unfinished": {**part(unfinished), "list": [
            {"index": ours[i]["index"], "seed": ours[i]["seed"], "outcome": "accident" if ours[i]["accident"] else "timeout",
             "return": ours[i]["ret"], "reference_return": reference[i]["ret"]} for i in unfinished]},
        "both_finished": {**part(both),  # lengths None (valid JSON) when no episode was finished by both
                          "mean_length": float(np.mean([ours[i]["length"] for i in both])) if both else None,
                          "reference_mean_length": float(np.mean([reference[i]["length"] for i in both])) if both else None},
        "only_controller_finished": part(only_ours),
    }
