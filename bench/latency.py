"""Controller latency, batch 1: the exported gated controller, the actor alone (the `gate_off`
ablation, a PolicyController: the floor), and d3rlpy's save_policy TorchScript when
bench/vs_d3rlpy.py has made one.

    python bench/latency.py runs/pointnav --calls 5000 --out runs/bench/latency.json

Each file is loaded as a robot would (torch.jit.load, one thread) and called on real
observations from the run's held-out episodes, one at a time; the numbers are the
wall-clock time per call through our runtime (numpy in, numpy out) and, for all three,
per bare module call (torch in, torch out). The controllers are timed in alternating
blocks of 100 calls (the first 10 of each block not counted), so that the gated/floor
ratio compares like with like: the same machine noise, each with its weights in cache.

    python bench/latency.py runs/new --baseline ../old-checkout runs/old

also times a checkout of another commit side by side, in the same blocks: its deploy/runtime.py
(which stands alone) loading the artifacts that its own code exported from `runs/old` (export
them there first, e.g. with that checkout's bench/latency.py); the rows gain "(baseline)".
"""

from __future__ import annotations

import argparse
import importlib.util
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

FLOOR = "actor alone, gate_off (floor)"


def interleaved_percentiles(fns: dict, inputs: list, calls: int, block: int = 100, warm: int = 10) -> dict[str, dict]:
    """p50/p99 per function, timed in alternating blocks: `block` calls of one function,
    then of the next, and so on until each has `calls` timed calls. All of them meet the
    same machine noise (a ratio of p99s timed one after the other mostly measures which
    one met the noisier minute), while each block runs with its own weights in cache as a
    robot's loop would: the first `warm` calls of every block are not counted."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    i = 0
    with torch.inference_mode():  # as the runtime and a robot call it: no autograd bookkeeping
        while any(len(t) < calls for t in times.values()):
            for name in names:
                fn = fns[name]
                for j in range(warm + block):
                    x = inputs[(i + j) % len(inputs)]
                    start = time.perf_counter_ns()
                    fn(x)
                    if j >= warm:
                        times[name].append((time.perf_counter_ns() - start) / 1000.0)
            i += block
    return {name: {"p50_us": float(np.percentile(t[:calls], 50)), "p99_us": float(np.percentile(t[:calls], 99)),
                   "mean_us": float(np.mean(t[:calls])), "calls": calls} for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a trained run (its artifact and ablations/gate_off are exported if missing)")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--d3rlpy-policy", type=Path, default=Path("runs/bench/vs_d3rlpy/d3rlpy_policy.pt"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/latency.json"))
    parser.add_argument("--baseline", nargs=2, type=Path, metavar=("CHECKOUT", "RUN_DIR"),
                        help="another commit's checkout and a run whose artifacts it exported, timed alongside")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config, _, _ = load_trained(args.run_dir)
    obs = load_offline_data(config.data).test.obs[:1000].numpy()
    artifacts = {"gated controller": args.run_dir / "artifact", FLOOR: args.run_dir / "ablations" / "gate_off"}
    for (name, folder), variant in zip(artifacts.items(), ("gated", "gate_off")):
        if not (folder / "controller.pt").is_file():  # `safecritic run` writes both
            export(args.run_dir, folder, variant)
    controllers = {name: load(folder, threads=1) for name, folder in artifacts.items()}
    if args.baseline:
        checkout, old_run = args.baseline
        spec = importlib.util.spec_from_file_location("baseline_runtime", checkout / "deploy" / "runtime.py")
        baseline = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(baseline)
        for name, folder in list(artifacts.items()):
            controllers[f"{name} (baseline)"] = baseline.load(old_run / folder.relative_to(args.run_dir), threads=1)
    modules = {name: c.module for name, c in controllers.items()}
    if args.d3rlpy_policy.is_file():
        modules["d3rlpy save_policy"] = torch.jit.load(str(args.d3rlpy_policy))
    # Through our runtime (numpy in and out), then the bare modules (torch in and out).
    runtime = interleaved_percentiles({n: c.act for n, c in controllers.items()}, list(obs), args.calls)
    tensors = [torch.from_numpy(o).unsqueeze(0) for o in obs]
    module = interleaved_percentiles(modules, tensors, args.calls)
    rows = {name: {"runtime": runtime.get(name), "module": module[name]} for name in modules}
    floor = rows[FLOOR]["runtime"]["p99_us"]
    gated = rows["gated controller"]["runtime"]["p99_us"]
    table = markdown_table(
        ["controller (batch 1, 1 thread)", "runtime p50 µs", "runtime p99 µs", "module p50 µs", "module p99 µs"],
        [[name, f"{r['runtime']['p50_us']:.0f}" if r["runtime"] else "-", f"{r['runtime']['p99_us']:.0f}" if r["runtime"] else "-",
          f"{r['module']['p50_us']:.0f}", f"{r['module']['p99_us']:.0f}"] for name, r in rows.items()],
    )
    report = {"machine": machine(), "rows": rows, "gated_over_floor_p99": gated / floor}
    print(table)
    print(f"gated p99 = {gated:.0f} µs = {gated / floor:.2f}x the actor alone's p99 (gate_off)")
    if args.baseline:
        base = rows["gated controller (baseline)"]["runtime"]
        report["gated_over_baseline"] = {q: rows["gated controller"]["runtime"][q] / base[q] for q in ("p50_us", "p99_us")}
        print("gated over the baseline's gated (runtime): p50 {p50_us:.3f}x, p99 {p99_us:.3f}x".format(
            **report["gated_over_baseline"]))
    write_json(args.out, report)


if __name__ == "__main__":
    main()
