"""Evaluation on Ray against the local process pool: the same artifact, engine, seeds and
number of workers, one backend after the other in one run; wall time, episodes/s, and
whether every episode's result is the same on both.

    python bench/ray_eval.py runs/ray_smoke/artifact --episodes 10000 --workers 2 --out runs/bench/ray_eval.json

Without --ray-address, Ray is started here with --workers CPUs (a local cluster); its start
is timed apart from the rollouts. Each backend's wall time runs from the first work item
submitted to the last result in (worker start-up included for both: the pool spawns its
processes, Ray starts its workers), not the parent's latency timing that follows. The load
average before and after is recorded: on a shared machine it says what else was running.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.configs.loader import config_from_data  # noqa: E402
from safecritic.deploy.evaluate import Runner, evaluate_artifacts, local_runner, summarize_env  # noqa: E402
from safecritic.deploy.ray_backend import RayRunner  # noqa: E402
from safecritic.deploy.runtime import artifact_digest  # noqa: E402
from safecritic.pipeline import read_manifest  # noqa: E402


def timed(runner: Runner, box: dict[str, float]) -> Runner:
    """`runner`, recording in box["seconds"] the time from the first item submitted to the last result."""

    def run(fn: Callable[[tuple], Any], items: list[tuple]):
        start = time.perf_counter()
        yield from runner(fn, items)
        box["seconds"] = time.perf_counter() - start

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="pool processes, and Ray's CPUs when Ray starts here")
    parser.add_argument("--engine", default="safecritic/PointNav-v0")
    parser.add_argument("--ray-address", default=None, help="a running cluster (default: start Ray here)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/ray_eval.json"))
    args = parser.parse_args()

    manifest = read_manifest(args.artifact)
    config = config_from_data(manifest["config"], [f"deploy.episodes={args.episodes}", f"data.workers={args.workers}",
                                                   f'env.eval_ids=["{args.engine}"]', "deploy.trajectories=0"],
                              "the artifact's config")
    load_before = os.getloadavg()
    rows, results, out = [], {}, {}

    box: dict[str, float] = {}
    results["local pool"] = evaluate_artifacts([args.artifact], config, runner=timed(local_runner(args.workers), box))
    out["local pool"] = {"seconds": box["seconds"], "start_s": 0.0}

    with RayRunner(args.ray_address, args.workers, config.env.imports) as ray_runner:
        start = time.perf_counter()
        ray_runner.connect()
        ray_start = time.perf_counter() - start
        box = {}
        results["ray"] = evaluate_artifacts([args.artifact], config, runner=timed(ray_runner, box))
        out["ray"] = {"seconds": box["seconds"], "start_s": ray_start,
                      "cluster_cpus": ray_runner.ray.cluster_resources().get("CPU")}
    load_after = os.getloadavg()

    episodes = {name: [asdict(e) for e in r[str(args.artifact)][args.engine].episodes] for name, r in results.items()}
    mismatches = sum(a != b for a, b in zip(episodes["local pool"], episodes["ray"]))
    equal = len(episodes["local pool"]) == len(episodes["ray"]) == args.episodes and mismatches == 0
    for name, r in out.items():
        r["episodes_per_s"] = args.episodes / r["seconds"]
        s = summarize_env(results[name][str(args.artifact)][args.engine])
        r["summary"] = {k: s[k] for k in ("episodes", "accident_rate", "accident_rate_upper", "mean_return",
                                          "mean_length", "latency_us")}
        rows.append([name, args.episodes, f"{r['seconds']:.1f}", f"{r['episodes_per_s']:.1f}", f"{r['start_s']:.1f}",
                     f"{s['mean_return']:.4f}", f"{s['latency_us']['p99']:.0f}"])
    report = {
        "machine": machine(), "artifact": str(args.artifact), "artifact_digest": artifact_digest(manifest),
        "engine": args.engine, "episodes": args.episodes, "workers": args.workers,
        "ray_address": args.ray_address or "started here", "backends": out,
        "ray_over_local_rate": out["ray"]["episodes_per_s"] / out["local pool"]["episodes_per_s"],
        "per_episode_equal": equal, "mismatched_episodes": mismatches,
        "load_average_before": load_before, "load_average_after": load_after,
    }
    write_json(args.out, report)
    print(markdown_table(["backend", "episodes", "wall s", "episodes/s", "start s", "mean return", "p99 us"], rows))
    print(f"\nRay / local pool episode rate: {report['ray_over_local_rate']:.2f}; per-episode results equal: {equal} "
          f"({mismatches} mismatched); load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
