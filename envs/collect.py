"""Collect a Minari dataset from a weighted mixture of scripted behaviours.

Episode i always gets the same behaviour, reset seed and noise, whatever the number
of worker processes, so a dataset is a pure function of (config, code version).
"""

from __future__ import annotations

import multiprocessing as mp
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from safecritic.configs.errors import ConfigError
from safecritic.configs.schema import Config
from safecritic.envs.faults import make_env
from safecritic.envs.minari_io import dataset_exists, dataset_lock, refuse_existing, write_atomically
from safecritic.envs.registry import behaviors_for, import_modules, make_behavior
from safecritic.envs.rollout import Episode, per_row, run_lockstep, summarize

CHUNK = 20  # episodes per work item: small enough for a smooth progress bar


def plan_behaviors(weights: dict[str, float], episodes: int, seed: int) -> list[str]:
    """Exact counts by largest remainder, shuffled: the mixture holds in every dataset size."""
    names = list(weights)
    share = np.array([weights[n] for n in names], dtype=np.float64)
    share = share / share.sum() * episodes
    counts = np.floor(share).astype(int)
    for idx in np.argsort(-(share - counts))[: episodes - counts.sum()]:
        counts[idx] += 1
    plan = [name for name, count in zip(names, counts) for _ in range(count)]
    np.random.default_rng(seed).shuffle(plan)
    return plan


def episode_seed(seed: int, index: int) -> int:
    """Reset seed of episode `index`: independent streams per (dataset seed, episode)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _collect_chunk(args: tuple[str, int, list[tuple[int, str]], list[str]]) -> list[tuple[int, str, Episode]]:
    """One chunk of the plan, its envs in lockstep (one scripted behaviour per env)."""
    env_id, seed, items, imports = args
    import_modules(imports)  # a spawned worker imports the user's modules again
    envs = [make_env(env_id) for _ in items]
    behaviors = []
    for index, name in items:
        behavior = make_behavior(env_id, name)
        behavior.reset(np.random.default_rng([seed, index, 1]))
        behaviors.append(behavior)
    try:
        episodes = run_lockstep(envs, [episode_seed(seed, index) for index, _ in items], per_row([b.act for b in behaviors]))
    finally:
        for env in envs:
            env.close()
    return [(index, name, episode) for (index, name), episode in zip(items, episodes)]


def collect_episodes(
    env_id: str, plan: list[str], seed: int, workers: int, progress: Callable[[int], None] | None = None,
    imports: list[str] | None = None,
) -> list[tuple[str, Episode]]:
    """Run the plan (one behaviour name per episode) in `workers` processes."""
    items = list(enumerate(plan))
    chunks = [(env_id, seed, items[i : i + CHUNK], list(imports or [])) for i in range(0, len(items), CHUNK)]
    results: list[tuple[int, str, Episode]] = []
    if workers <= 1 or len(chunks) == 1:
        for chunk in chunks:
            results.extend(_collect_chunk(chunk))
            if progress:
                progress(len(chunk[2]))
    else:
        # spawn, not fork: the parent may hold torch/OpenMP threads that fork copies badly.
        with mp.get_context("spawn").Pool(min(workers, len(chunks))) as pool:
            for done in pool.imap_unordered(_collect_chunk, chunks):
                results.extend(done)
                if progress:
                    progress(len(done))
    results.sort(key=lambda r: r[0])
    return [(name, episode) for _, name, episode in results]


@dataclass
class CollectSummary:
    dataset_id: str
    path: str
    episodes: int
    transitions: int
    seconds: float
    per_behavior: dict[str, dict[str, float]]


def _buffers(episodes: list[tuple[str, Episode]], names: tuple[str, ...]):
    from minari.data_collector import EpisodeBuffer

    buffers = []
    reports_success = any(ep.reports_success for _, ep in episodes)
    for index, (name, ep) in enumerate(episodes):
        code = np.full(ep.length + 1, names.index(name), dtype=np.int64)
        infos = {"cost": ep.costs.astype(np.float64), "accident": ep.accidents.astype(bool), "behavior": code}
        if reports_success:  # a task without a success signal records none (not "never succeeded")
            infos["success"] = ep.successes.astype(bool)
        buffers.append(
            EpisodeBuffer(
                id=index,
                seed=ep.seed,
                observations=ep.observations,
                actions=ep.actions,
                rewards=ep.rewards,
                terminations=ep.terminations,
                truncations=ep.truncations,
                infos=infos,
            )
        )
    return buffers


def collect_dataset(
    config: Config, overwrite: bool = False, progress: Callable[[int], None] | None = None
) -> CollectSummary:
    """Collect `config.data.episodes` episodes and write them as a Minari dataset (one collector per id)."""
    with dataset_lock(config.data.dataset_id):
        return _collect_dataset(config, overwrite, progress)


def _collect_dataset(config: Config, overwrite: bool, progress: Callable[[int], None] | None) -> CollectSummary:
    import minari

    data, env_id = config.data, config.env.id
    names = behaviors_for(env_id)
    if not names:
        raise ConfigError(f"{env_id} has no scripted behaviours to collect with; load an existing dataset instead")
    if dataset_exists(data.dataset_id) and not overwrite:
        refuse_existing(data.dataset_id)  # before collecting, not after: no wasted minutes
    start = time.perf_counter()
    weights = data.behaviors or dict.fromkeys(names, 1.0)  # empty: every behaviour of the task, equal shares
    plan = plan_behaviors(weights, data.episodes, data.seed)
    episodes = collect_episodes(env_id, plan, data.seed, data.workers, progress, config.env.imports)
    mixture = ", ".join(f"{n} {w:g}" for n, w in weights.items())
    description = (
        f"safecritic scripted mixture ({mixture}), seed {data.seed}, {data.episodes} episodes in {env_id}. "
        "Infos per step (N+1 entries, reset first): cost (float in [0, 1]; transition t's cost is "
        "infos['cost'][t + 1]), accident (bool), success (bool, where the task reports it), behavior (int: "
        + ", ".join(f"{i}={n}" for i, n in enumerate(names))
        + ")."
    )

    def create() -> None:
        with warnings.catch_warnings():
            # Minari nags about an author e-mail and a code permalink; neither exists here.
            warnings.filterwarnings("ignore", message=".*(code_permalink|author_email).*", category=UserWarning)
            minari.create_dataset_from_buffers(
                dataset_id=data.dataset_id,
                buffer=_buffers(episodes, names),
                env=env_id,
                eval_env=env_id,
                algorithm_name=f"scripted mixture: {mixture}",
                author="safecritic",
                description=description,
            )

    path = write_atomically(data.dataset_id, overwrite, create)
    per_behavior = {
        name: summarize([ep for n, ep in episodes if n == name]) for name in weights if name in set(plan)
    }
    return CollectSummary(
        dataset_id=data.dataset_id,
        path=str(path),
        episodes=len(episodes),
        transitions=int(sum(ep.length for _, ep in episodes)),
        seconds=time.perf_counter() - start,
        per_behavior=per_behavior,
    )
