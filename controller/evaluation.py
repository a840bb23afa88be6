"""Roll a trained run's policies out in the simulator: a quick look at quality before export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from safecritic.configs.schema import FaultsConfig
from safecritic.controller.gate import PolicyController
from safecritic.controller.training import load_trained
from safecritic.envs.faults import make_env
from safecritic.envs.rollout import Episode, evaluation_seed, run_lockstep, summarize

POLICIES = ("actor", "unconstrained", "bc", "bc_successful")
CHUNK = 10  # envs stepped in lockstep


def rollout_policy(
    controller: torch.nn.Module,
    env_id: str,
    episodes: int,
    seed: int,
    faults: FaultsConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Episode]:
    """`controller` (raw observations [B, D] -> (actions, records)) on evaluation episodes 0..episodes-1."""
    envs = [make_env(env_id, faults) for _ in range(min(CHUNK, episodes))]

    @torch.no_grad()
    def act(obs: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, None]:
        return controller(torch.as_tensor(obs, dtype=torch.float32))[0].numpy(), None

    out: list[Episode] = []
    try:
        for start in range(0, episodes, CHUNK):
            indices = range(start, min(start + CHUNK, episodes))
            out += run_lockstep(envs[: len(indices)], [evaluation_seed(seed, i) for i in indices], act)
            if progress:
                progress(len(indices))
    finally:
        for env in envs:
            env.close()
    return out


def evaluate_run(
    run_dir: Path, which: str, env_ids: list[str] | None, episodes: int, seed: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Summaries of one of a trained run's policies (its mode, no gate) in each env."""
    if which not in POLICIES:
        raise ValueError(f"unknown policy {which!r}; known: {', '.join(POLICIES)}")
    config, model, _ = load_trained(run_dir)
    controller = PolicyController(model, config.gate, which)
    results = {}
    for env_id in env_ids or [config.env.id]:
        results[env_id] = summarize(rollout_policy(controller, env_id, episodes, seed, config.env.faults, progress))
    return {"run_dir": str(run_dir), "policy": which, "episodes": episodes, "seed": seed, "results": results}
