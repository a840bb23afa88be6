"""Training throughput: updates/s of plain CQL and of the full safecritic update, and the
achieved FLOP rate as a fraction of this machine's matmul peak, measured in the same run.

    python bench/throughput.py --seconds 20 --out runs/bench/throughput.json

FLOPs are counted by torch.utils.flop_counter on one real update (forward and backward
matmuls), not estimated by hand. Plain CQL is bench/plain_cql.py at d3rlpy's sizes and
hyperparameters (what bench/vs_d3rlpy.py times; raw observations). "Critics + actors" is the
critic-phase update the Trainer runs (controller/update.py: Q_R and both Q_C heads, the
constrained actor's fit and its unconstrained twin's, the multipliers, the targets); "full
update" adds one OOD-detector step (the detector trains in the pretraining phase in a run; it
is included here so the number covers every part).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, matmul_peak, write_json  # noqa: E402

from plain_cql import D3RLPY_HP, PlainCQL  # noqa: E402
from steps import gflop_of, make_step  # noqa: E402

from safecritic.pipeline import load  # noqa: E402
from safecritic.controller.training import Trainer  # noqa: E402
from safecritic.envs.dataset import load_offline_data  # noqa: E402
from safecritic.envs.minari_io import dataset_exists  # noqa: E402

WARMUP = 20  # untimed updates before each measurement (the first ones allocate)


def trainer_step(config_path, overrides: list[str], full: bool):
    """The Trainer's critic-phase update (+ one detector step when `full`) on the config."""
    config = load(config_path, overrides)
    trainer = Trainer(config, load_offline_data(config.data), Path("runs/bench/throughput-scratch"))
    return make_step(trainer, with_detector=full)


def plain_cql_step(config_path, precision: str, threads: int):
    """bench/plain_cql.py's update at d3rlpy's sizes, on the config's data."""
    config = load(config_path)
    return make_step(PlainCQL(load_offline_data(config.data), {**D3RLPY_HP, "threads": threads}, precision))


def measure(name: str, step, seconds: float, overrides: list[str], **info) -> dict:
    for _ in range(WARMUP):
        step()
    gflop = gflop_of(step)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    rate = count / (time.perf_counter() - start)
    return {"name": name, "updates_per_s": rate, "gflop_per_update": gflop, "gflops": rate * gflop,
            "overrides": overrides, **info}


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def time_breakdown(config_path, overrides: list[str], steps: int = 30) -> dict:
    """Where the full update's time goes (torch.profiler self CPU time): matmuls vs the rest."""
    from torch.profiler import ProfilerActivity, profile

    step = trainer_step(config_path, overrides, full=True)
    for _ in range(5):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in events)
    matmul = sum(t for k, t in events if k in MATMUL_OPS)
    rest = sorted(((k, t) for k, t in events if k not in MATMUL_OPS), key=lambda kt: -kt[1])[:8]
    return {"overrides": overrides, "matmul_share": matmul / total,
            "top_other_ops": [{"op": k, "share": t / total} for k, t in rest]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", type=Path, default=None, help="base config (default: packaged PointNav)")
    parser.add_argument("--seconds", type=float, default=20.0, help="timing window per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/throughput.json"))
    args = parser.parse_args()
    config = load(args.config)
    if not dataset_exists(config.data.dataset_id):
        sys.exit(f"dataset {config.data.dataset_id} is missing: run `safecritic collect` first")
    torch.set_num_threads(args.threads)
    peak = {"fp32": matmul_peak(args.threads), "bf16": matmul_peak(args.threads, dtype=torch.bfloat16)}
    rows = []
    for precision in ("fp32", "bf16"):
        extra = [f"run.precision={precision}"]
        rows += [
            measure(f"plain CQL (bench/plain_cql.py, d3rlpy sizes: 2x256, 10 samples), {precision}",
                    plain_cql_step(args.config, precision, args.threads), args.seconds, extra,
                    hyperparameters={**D3RLPY_HP, "threads": args.threads}),
            measure(f"safecritic default: critics + actors, {precision}",
                    trainer_step(args.config, extra, full=False), args.seconds, extra),
            measure(f"safecritic default: full update (+ OOD detector step), {precision}",
                    trainer_step(args.config, extra, full=True), args.seconds, extra),
        ]
        for r in rows[-3:]:
            r["precision"] = precision
    peak_after = {"fp32": matmul_peak(args.threads), "bf16": matmul_peak(args.threads, dtype=torch.bfloat16)}
    for r in rows:
        # Against the peak of the arithmetic the update ran in (bf16 autocast: bf16 matmuls).
        r["fraction_of_peak"] = r["gflops"] / max(peak[r["precision"]], peak_after[r["precision"]])
    table = markdown_table(
        ["update", "updates/s", "GFLOP/update", "GFLOP/s", "of peak (same precision)"],
        [[r["name"], f"{r['updates_per_s']:.1f}", f"{r['gflop_per_update']:.2f}", f"{r['gflops']:.0f}",
          f"{r['fraction_of_peak']:.0%}"] for r in rows],
    )
    breakdown = time_breakdown(args.config, ["run.precision=fp32"])
    write_json(args.out, {"machine": machine(), "matmul_peak_gflops": [peak, peak_after], "rows": rows,
                          "full_update_fp32_time_breakdown": breakdown})
    for p in peak:
        print(f"{p} matmul peak ({args.threads} threads, 2048^2): {peak[p]:.0f} GFLOP/s before, {peak_after[p]:.0f} after")
    print(table)
    print(f"full update (fp32), self CPU time: {breakdown['matmul_share']:.0%} in matmuls; largest others: "
          + ", ".join(f"{o['op']} {o['share']:.0%}" for o in breakdown["top_other_ops"][:5]))


if __name__ == "__main__":
    main()
