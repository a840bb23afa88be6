"""Evaluate an exported controller: the .pt file, not Python objects, in every configured engine.

Episodes come from fixed seeds and are spread over worker processes (or Ray tasks:
deploy/ray_backend.py runs the same work items through the same `_chunk`); each worker
loads the artifact through the runtime (hash-checked) and steps a chunk of envs in
lockstep with one batched controller call per step (a batch-1 call costs more than a
simulator step, so one env per call would leave the simulator idle most of the time).
Latency, which certification judges at batch 1, is timed separately, in the parent process
once every rollout has finished: batch-1 calls on observations the episodes visited. Timed
inside the workers it met the pool's other rollouts on the same cores (MuJoCo p99 1.04 ms under
that load against 0.72-0.78 ms alone, the same artifact and host); a robot gives its controller
a core, and `bench/latency.py` times it alone too. Per episode: return, cost, accident, success, length, gate decisions,
OOD alarms on the policy's proposal; per engine: latency percentiles.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from safecritic.configs.schema import Config, FaultsConfig
from safecritic.envs.rollout import evaluation_seed

CHUNK = 10  # episodes per work item

# A backend: runs `fn` on every work item (in any order) and yields the results as they finish.
# Every backend runs the same `_chunk` on the same items, so the seeds, and the episodes, are the same.
Runner = Callable[[Callable[[tuple], Any], list[tuple]], Iterable[Any]]


@dataclass
class EpisodeResult:
    env_id: str
    index: int
    seed: int
    ret: float
    cost: float
    accident: bool
    success: bool
    length: int
    decisions: list[int]  # steps with code 0, 1, 2, 3
    ood_alarms: int  # steps where the policy's proposal scored above the OOD threshold
    cost_vetoes: int  # steps where the proposal's Q_C was above the cost threshold
    reports_success: bool = True  # whether the env reports info["success"] at all
    trace: dict[str, list] | None = None  # observations, per-step records and costs (first episodes only)


@dataclass
class EnvEvaluation:
    env_id: str
    episodes: list[EpisodeResult]
    latencies_us: np.ndarray = field(repr=False)


def trace_records(trace: dict[str, list]) -> np.ndarray:
    """A kept path's records as floats [T, R]: the trace stores NaN as None (JSON has no NaN)."""
    return np.array([[np.nan if v is None else v for v in r] for r in trace["record"]], dtype=float)


_CONTROLLERS: dict[str, Any] = {}  # per worker process: loaded once, reused across chunks
_ENVS: dict[str, list[Any]] = {}
LATENCY_OBS = 200  # observations a chunk keeps for the latency timing
LATENCY_CALLS = 1000  # batch-1 calls timed per artifact and engine, after the rollouts
LATENCY_WARMUP = 20  # untimed calls first (the first calls allocate)


def _envs(env_id: str, faults: dict, count: int) -> list[Any]:
    from safecritic.envs.faults import make_env

    key = f"{env_id}|{sorted(faults.items())}"
    pool = _ENVS.setdefault(key, [])
    while len(pool) < count:
        pool.append(make_env(env_id, FaultsConfig(**faults)))
    return pool[:count]


def _chunk(args: tuple) -> tuple[str, list[EpisodeResult], np.ndarray]:
    """Run the chunk's episodes in lockstep (envs/rollout.py: one batched controller call per
    step); return their results and some observations they visited, for the latency timing."""
    artifact_dir, env_id, faults, indices, base_seed, keep_trace, imports = args
    from safecritic.deploy.runtime import load
    from safecritic.envs.registry import import_modules
    from safecritic.envs.rollout import run_lockstep

    import_modules(imports)  # a spawned worker imports the user's modules again
    if artifact_dir not in _CONTROLLERS:
        _CONTROLLERS[artifact_dir] = load(artifact_dir, threads=1)
    controller = _CONTROLLERS[artifact_dir]
    thresholds = controller.manifest["thresholds"]
    seeds = [evaluation_seed(base_seed, i) for i in indices]
    seen: list[np.ndarray] = []

    def act(obs: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(seen) < LATENCY_OBS:
            seen.extend(obs[: LATENCY_OBS - len(seen)])
        return controller.act(obs)

    episodes = run_lockstep(_envs(env_id, faults, len(indices)), seeds, act)
    results = []
    for index, seed, ep in zip(indices, seeds, episodes):
        records = ep.records
        codes = np.bincount(records[:, 0].astype(int), minlength=4)[:4]
        trace = None
        if index < keep_trace:
            trace = {"obs": ep.observations.tolist(),
                     "record": [[None if np.isnan(v) else float(v) for v in r] for r in records],
                     "cost": ep.costs[1:].tolist()}  # cost[t]: the cost of the step record[t] decided
        results.append(EpisodeResult(
            env_id, index, seed, ep.ret, ep.cost, ep.accident, ep.success, ep.length, codes.tolist(),
            int((records[:, 5] > thresholds["ood"]).sum()), int((records[:, 4] > thresholds["cost"]).sum()),
            ep.reports_success, trace))
    return artifact_dir, results, np.asarray(seen, dtype=np.float32)


def time_batch1_calls(controller: Any, observations: np.ndarray) -> np.ndarray:
    """Latencies (µs) of LATENCY_CALLS batch-1 calls of a loaded runtime controller on
    `observations` (cycled), after LATENCY_WARMUP untimed ones."""
    for k in range(LATENCY_WARMUP):
        controller.act(observations[k % len(observations)])
    latencies = np.empty(LATENCY_CALLS)
    for k in range(LATENCY_CALLS):
        o = observations[k % len(observations)]
        start = time.perf_counter_ns()
        controller.act(o)
        latencies[k] = (time.perf_counter_ns() - start) / 1000.0
    return latencies


def _time_after_rollouts(visited: dict[tuple[str, str], list[np.ndarray]]) -> dict[tuple[str, str], np.ndarray]:
    """Batch-1 latencies per (artifact, engine), timed in this process with nothing else of ours
    running: each artifact loaded once, torch's thread count restored afterwards."""
    import torch

    from safecritic.deploy.runtime import load

    before = torch.get_num_threads()
    try:
        controllers = {a: load(a, threads=1) for a in {key[0] for key in visited}}
        return {key: time_batch1_calls(controllers[key[0]], np.concatenate(obs)) for key, obs in visited.items()}
    finally:
        torch.set_num_threads(before)


def local_runner(workers: int) -> Runner:
    """This machine's backend: the items in this process (workers <= 1) or in a pool of
    `workers` spawned processes."""

    def run(fn: Callable[[tuple], Any], items: list[tuple]) -> Iterator[Any]:
        if workers <= 1:
            yield from map(fn, items)
            return
        # spawn, not fork: the parent holds torch and OpenMP threads.
        with mp.get_context("spawn").Pool(min(workers, len(items))) as pool:
            yield from pool.imap_unordered(fn, items)

    return run


def evaluate_artifacts(
    artifact_dirs: list[Path], config: Config, progress: Callable[[int], None] | None = None,
    runner: Runner | None = None,
) -> dict[str, dict[str, EnvEvaluation]]:
    """Run each artifact in every env of config.env.eval_ids (with config.env.faults), all
    on one backend: `runner` (e.g. deploy/ray_backend.py's), by default a pool of
    config.data.workers processes. Returns {artifact_dir: {env_id: EnvEvaluation}}."""
    d = config.deploy
    faults = config.env.faults.model_dump()
    work = []
    for artifact_dir in map(str, artifact_dirs):
        for env_id in config.env.eval_ids:
            for start in range(0, d.episodes, CHUNK):
                indices = list(range(start, min(start + CHUNK, d.episodes)))
                work.append((artifact_dir, env_id, faults, indices, d.seed, d.trajectories, config.env.imports))
    results: dict[tuple[str, str], list[EpisodeResult]] = {}
    visited: dict[tuple[str, str], list[np.ndarray]] = {}

    def take(out: tuple[str, list[EpisodeResult], np.ndarray]) -> None:
        artifact_dir, done, seen = out
        key = (artifact_dir, done[0].env_id)
        results.setdefault(key, []).extend(done)
        visited.setdefault(key, []).append(seen)
        if progress:
            progress(len(done))

    for out in (runner or local_runner(config.data.workers))(_chunk, work):
        take(out)
    # After the last rollout (the local pool closed, Ray's workers idle): the timing shares the
    # machine with nothing of ours.
    latencies = _time_after_rollouts(visited)
    return {
        a: {
            env_id: EnvEvaluation(env_id, sorted(results[(a, env_id)], key=lambda r: r.index),
                                  latencies[(a, env_id)])
            for env_id in config.env.eval_ids
        }
        for a in map(str, artifact_dirs)
    }


def summarize_env(ev: EnvEvaluation) -> dict[str, Any]:
    from safecritic.deploy.certify import clopper_pearson

    eps = ev.episodes
    n = len(eps)
    accidents = sum(e.accident for e in eps)
    decisions = np.sum([e.decisions for e in eps], axis=0)
    steps = int(decisions.sum())
    low, high = clopper_pearson(accidents, n)
    return {
        "episodes": n,
        "success_rate": float(np.mean([e.success for e in eps])),
        "reports_success": any(e.reports_success for e in eps),
        "accident_rate": accidents / n,
        "accidents": int(accidents),
        "accident_rate_low": low,
        "accident_rate_upper": high,
        "mean_return": float(np.mean([e.ret for e in eps])),
        "std_return": float(np.std([e.ret for e in eps])),
        "mean_cost": float(np.mean([e.cost for e in eps])),
        "cost_episode_rate": float(np.mean([e.cost > 0 for e in eps])),
        "mean_length": float(np.mean([e.length for e in eps])),
        "decision_fractions": {str(k): float(v / max(steps, 1)) for k, v in enumerate(decisions)},
        "ood_alarm_rate": float(sum(e.ood_alarms for e in eps) / max(steps, 1)),
        "cost_veto_rate": float(sum(e.cost_vetoes for e in eps) / max(steps, 1)),
        "latency_us": {
            "p50": float(np.percentile(ev.latencies_us, 50)),
            "p99": float(np.percentile(ev.latencies_us, 99)),
            "max": float(ev.latencies_us.max()),
            "calls": int(ev.latencies_us.size),
        },
    }


def episodes_as_dicts(ev: EnvEvaluation) -> list[dict[str, Any]]:
    return [asdict(e) for e in ev.episodes]
