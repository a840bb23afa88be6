"""Evaluation-loop speed: env steps/s with the exported controller in the loop versus the
simulator's raw step rate (random actions, same wrappers), in each engine.

    python bench/eval_loop.py runs/pointnav/artifact --steps 20000 --out runs/bench/eval_loop.json

One process, one thread; the controller runs over a vector of envs stepped in lockstep
(`--envs`, as `safecritic evaluate` does), so one batched call serves many env steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.deploy.runtime import load  # noqa: E402
from safecritic.envs.faults import make_env  # noqa: E402

ENGINES = ["safecritic/PointNav-v0", "safecritic/PointNavBullet-v0"]


def run(env_id: str, n_envs: int, steps: int, policy) -> float:
    envs = [make_env(env_id) for _ in range(n_envs)]
    obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
    rng = np.random.default_rng(0)
    done_steps, start = 0, time.perf_counter()
    while done_steps < steps:
        actions = policy(obs, rng)
        for i, env in enumerate(envs):
            o, _, term, trunc, _ = env.step(actions[i])
            if term or trunc:
                o, _ = env.reset()
            obs[i] = o
        done_steps += n_envs
    return done_steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact_dir", type=Path)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--envs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/eval_loop.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    controller = load(args.artifact_dir, threads=1)
    rows = []
    for env_id in ENGINES:
        raw = run(env_id, args.envs, args.steps, lambda o, rng: rng.uniform(-1, 1, size=(len(o), 2)).astype(np.float32))
        looped = run(env_id, args.envs, args.steps, lambda o, rng: controller.act(o)[0])
        single = run(env_id, 1, args.steps // 4, lambda o, rng: controller.act(o)[0])
        rows.append({"env_id": env_id, "raw_steps_per_s": raw, "controller_steps_per_s": looped,
                     "ratio": looped / raw, "batch1_steps_per_s": single, "batch1_ratio": single / raw})
    table = markdown_table(
        ["engine", "raw steps/s", f"with controller ({args.envs} envs)", "ratio", "with controller (1 env)", "ratio"],
        [[r["env_id"], f"{r['raw_steps_per_s']:.0f}", f"{r['controller_steps_per_s']:.0f}", f"{r['ratio']:.0%}",
          f"{r['batch1_steps_per_s']:.0f}", f"{r['batch1_ratio']:.0%}"] for r in rows],
    )
    write_json(args.out, {"machine": machine(), "envs": args.envs, "rows": rows})
    print(table)


if __name__ == "__main__":
    main()
