"""Controller latency, batch 1: the exported gated controller, the bare actor exported alone
(the floor), and d3rlpy's save_policy TorchScript when bench/vs_d3rlpy.py has made one.

    python bench/latency.py runs/pointnav --calls 5000 --out runs/bench/latency.json

Each file is loaded as a robot would (torch.jit.load, one thread) and called on real
observations from the run's held-out episodes, one at a time; the numbers are the
wall-clock time per call through our runtime (numpy in, numpy out) and, for all three,
per bare module call (torch in, torch out).
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

from safecritic.controller.training import load_trained  # noqa: E402
from safecritic.deploy.runtime import load  # noqa: E402
from safecritic.envs.dataset import load_offline_data  # noqa: E402
from safecritic.pipeline import export  # noqa: E402


def percentiles(fn, inputs, calls: int, warmup: int = 300) -> dict:
    times = np.empty(calls)
    with torch.inference_mode():  # as the runtime and a robot call it: no autograd bookkeeping
        _time_calls(fn, inputs, np.empty(warmup))
        _time_calls(fn, inputs, times)
    return {"p50_us": float(np.percentile(times, 50)), "p99_us": float(np.percentile(times, 99)),
            "mean_us": float(times.mean()), "calls": calls}


def _time_calls(fn, inputs, times: np.ndarray) -> None:
    for i in range(len(times)):
        x = inputs[i % len(inputs)]
        start = time.perf_counter_ns()
        fn(x)
        times[i] = (time.perf_counter_ns() - start) / 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a trained run (its artifact is exported if missing)")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--d3rlpy-policy", type=Path, default=Path("runs/bench/vs_d3rlpy/d3rlpy_policy.pt"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/latency.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config, _, _ = load_trained(args.run_dir)
    obs = load_offline_data(config.data).test.obs[:1000].numpy()
    artifacts = {"gated controller": args.run_dir / "artifact", "bare actor (floor)": args.run_dir / "ablations" / "bare_actor"}
    if not (artifacts["gated controller"] / "controller.pt").is_file():
        export(args.run_dir, artifacts["gated controller"])
    export(args.run_dir, artifacts["bare actor (floor)"], "bare_actor")
    rows = {}
    for name, folder in artifacts.items():
        controller = load(folder, threads=1)
        module = controller.module
        tensors = [torch.from_numpy(o).unsqueeze(0) for o in obs]
        rows[name] = {"runtime": percentiles(controller.act, list(obs), args.calls),
                      "module": percentiles(lambda x: module(x), tensors, args.calls)}
    if args.d3rlpy_policy.is_file():
        policy = torch.jit.load(str(args.d3rlpy_policy))
        tensors = [torch.from_numpy(o).unsqueeze(0) for o in obs]
        with torch.no_grad():
            rows["d3rlpy save_policy"] = {"runtime": None, "module": percentiles(lambda x: policy(x), tensors, args.calls)}
    floor = rows["bare actor (floor)"]["runtime"]["p99_us"]
    gated = rows["gated controller"]["runtime"]["p99_us"]
    table = markdown_table(
        ["controller (batch 1, 1 thread)", "runtime p50 µs", "runtime p99 µs", "module p50 µs", "module p99 µs"],
        [[name, f"{r['runtime']['p50_us']:.0f}" if r["runtime"] else "-", f"{r['runtime']['p99_us']:.0f}" if r["runtime"] else "-",
          f"{r['module']['p50_us']:.0f}", f"{r['module']['p99_us']:.0f}"] for name, r in rows.items()],
    )
    write_json(args.out, {"machine": machine(), "rows": rows, "gated_over_floor_p99": gated / floor})
    print(table)
    print(f"gated p99 = {gated:.0f} µs = {gated / floor:.2f}x the bare actor's p99")


if __name__ == "__main__":
    main()
