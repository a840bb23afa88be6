"""Adam's CPU for-loop implementation vs its fused kernel, on the default update step.

    python bench/optimizer_ab.py --blocks 10 --block 50

Two trainers on the same config and data, one with torch's default (for-loop) Adam, one
with fused Adam (what training uses, controller/training.py `adam`), timed in
alternating blocks of `--block` updates so both meet the same machine noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.pipeline import load  # noqa: E402
from safecritic.controller.training import Trainer, adam  # noqa: E402
from safecritic.envs.dataset import load_offline_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", type=Path, default=None, help="config (default: packaged PointNav)")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--block", type=int, default=50, help="updates per timed block")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/optimizer_ab.json"))
    args = parser.parse_args()
    config = load(args.config)
    data = load_offline_data(config.data)
    steps = {}
    for name, fused in (("for-loop Adam (torch's CPU default)", False), ("fused Adam (training's)", True)):
        trainer = Trainer(config, data, "unused")
        trainer.optimizers = {k: adam(o.param_groups[0]["params"], o.param_groups[0]["lr"], fused)
                              for k, o in trainer.optimizers.items()}
        steps[name] = trainer.update_step()
    for step in steps.values():
        for _ in range(args.block):  # warm-up
            step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.blocks):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.block):
                step()
            rates[name].append(args.block / (time.perf_counter() - start))
    rows = [[name, f"{np.median(r):.1f}", f"{min(r):.1f}-{max(r):.1f}"] for name, r in rates.items()]
    write_json(args.out, {"machine": machine(), "block": args.block, "rates": rates})
    print(markdown_table(["optimiser", "updates/s (median of blocks)", "range"], rows))


if __name__ == "__main__":
    main()
