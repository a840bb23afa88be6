"""Evaluation-loop speed: env steps/s with the exported controller in the loop versus the
simulator's raw step rate (random actions, same wrappers), in each engine the artifact was
trained for (its config's env.eval_ids).

    python bench/eval_loop.py runs/pointnav/artifact --steps 20000 --out runs/bench/eval_loop.json

One process, one thread; the controller runs over a vector of envs stepped in lockstep
(`--envs`, as `safecritic evaluate` does), so one batched call serves many env steps.
The raw and the controlled loops run in alternating blocks (`--rounds`), so that a host
whose speed drifts during the run (a shared VM does) moves both rates alike and the ratio
measures the controller, not the hour. The controlled loop's time is split into the
controller's calls and the rest (stepping the envs, bookkeeping), to name the loss; and the
same batched call is timed alone, back to back on the loop's last observations, so that the
in-loop call's extra (its weights and buffers evicted by the envs' stepping) is measured too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.deploy.runtime import load  # noqa: E402
from safecritic.envs.faults import make_env  # noqa: E402
from safecritic.envs.registry import import_modules  # noqa: E402

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class LockstepLoop:
    """n envs stepped in lockstep by one policy; `run` adds steps and seconds to its totals."""

    def __init__(self, env_id: str, n_envs: int, policy: Policy) -> None:
        self.envs = [make_env(env_id) for _ in range(n_envs)]
        self.obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(self.envs)])
        self.policy, self.rng = policy, np.random.default_rng(0)
        self.reset_totals()

    def reset_totals(self) -> None:
        self.steps, self.seconds, self.policy_seconds = 0, 0.0, 0.0

    def run(self, steps: int) -> None:
        done, start = 0, time.perf_counter()
        while done < steps:
            t = time.perf_counter()
            actions = self.policy(self.obs, self.rng)
            self.policy_seconds += time.perf_counter() - t
            for i, env in enumerate(self.envs):
                o, _, term, trunc, _ = env.step(actions[i])
                if term or trunc:
                    o, _ = env.reset()
                self.obs[i] = o
            done += len(self.envs)
        self.seconds += time.perf_counter() - start
        self.steps += done

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    def us_per_step(self, seconds: float) -> float:
        return 1e6 * seconds / self.steps


def measure(env_id: str, n_envs: int, steps: int, rounds: int, controller) -> dict:
    box = controller.manifest["action_space"]
    low, high = np.asarray(box["low"], dtype=np.float32), np.asarray(box["high"], dtype=np.float32)
    raw = LockstepLoop(env_id, n_envs, lambda o, rng: rng.uniform(low, high, size=(len(o), len(low))).astype(np.float32))
    looped = LockstepLoop(env_id, n_envs, lambda o, rng: controller.act(o)[0])
    single = LockstepLoop(env_id, 1, lambda o, rng: controller.act(o)[0])
    for loop in (raw, looped, single):  # warm-up (first calls allocate), not timed
        loop.run(len(loop.envs))
        loop.reset_totals()
    block = max(n_envs, steps // rounds)
    for _ in range(rounds):
        raw.run(block)
        looped.run(block)
        single.run(max(1, block // 4))
    alone = []
    for _ in range(max(1, rounds) * 10):  # the same batch, called back to back (warm caches)
        start = time.perf_counter()
        controller.act(looped.obs)
        alone.append(time.perf_counter() - start)
    return {
        "env_id": env_id, "raw_steps_per_s": raw.rate, "controller_steps_per_s": looped.rate,
        "ratio": looped.rate / raw.rate, "batch1_steps_per_s": single.rate, "batch1_ratio": single.rate / raw.rate,
        "raw_us_per_step": raw.us_per_step(raw.seconds),
        "loop_us_per_step": looped.us_per_step(looped.seconds),
        "controller_us_per_step": looped.us_per_step(looped.policy_seconds),
        "controller_alone_us_per_step": 1e6 * float(np.median(alone)) / n_envs,
        "env_us_per_step_in_loop": looped.us_per_step(looped.seconds - looped.policy_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact_dir", type=Path)
    parser.add_argument("--steps", type=int, default=20000, help="env steps per loop and engine (all rounds together)")
    parser.add_argument("--envs", type=int, default=10, help="envs in lockstep (the controller's batch)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating raw/controlled blocks")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/eval_loop.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    controller = load(args.artifact_dir, threads=1)
    env_config = controller.manifest["config"]["env"]
    import_modules(env_config.get("imports", []))  # a task of the user's registers its envs
    rows = [measure(env_id, args.envs, args.steps, args.rounds, controller) for env_id in env_config["eval_ids"]]
    table = markdown_table(
        ["engine", "raw steps/s", f"with controller ({args.envs} envs)", "ratio", "with controller (1 env)", "ratio",
         "µs/step: raw", "µs/step in loop: controller + the rest", "controller alone µs/step"],
        [[r["env_id"], f"{r['raw_steps_per_s']:.0f}", f"{r['controller_steps_per_s']:.0f}", f"{r['ratio']:.0%}",
          f"{r['batch1_steps_per_s']:.0f}", f"{r['batch1_ratio']:.0%}", f"{r['raw_us_per_step']:.1f}",
          f"{r['controller_us_per_step']:.1f} + {r['env_us_per_step_in_loop']:.1f}",
          f"{r['controller_alone_us_per_step']:.1f}"] for r in rows],
    )
    write_json(args.out, {"machine": machine(), "envs": args.envs, "rounds": args.rounds,
                          "artifact": str(args.artifact_dir), "rows": rows})
    print(table)


if __name__ == "__main__":
    main()
