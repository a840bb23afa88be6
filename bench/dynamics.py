"""The dynamics ensemble on each preset's dataset: is its one-step error worth rolling out?

    python bench/dynamics.py [-c configs/pointnav.yaml ...] [--steps 3000] --out runs/bench/dynamics.json

Per preset: the ensemble (critics/dynamics.py) trained on the training episodes (the elites
chosen on a random tenth of those rows), then judged on the held-out test episodes no member
saw: the error of s' and r in data standard deviations (squared) against the trivial
predictors (s' = s; the mean reward), the cost head's Brier score against the base rate, and
the fit time. "skill" = 1 - model / no-change error of s' (0: no better than standing still).
The datasets must exist (`safecritic collect -c CONFIG`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.configs.loader import load_config  # noqa: E402
from safecritic.critics.dynamics import DynamicsEnsemble, fit_dynamics, held_out_error  # noqa: E402
from safecritic.envs.dataset import load_offline_data  # noqa: E402

PRESETS = [Path("configs/pointnav.yaml"), Path("configs/panda_reach.yaml"), Path("configs/hopper_velocity.yaml")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", type=Path, action="append", help="presets (default: the three shipped)")
    parser.add_argument("--steps", type=int, default=3000, help="gradient steps of the whole ensemble")
    parser.add_argument("--members", type=int, default=7)
    parser.add_argument("--elites", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/dynamics.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, results = [], {}
    for preset in args.config or PRESETS:
        config = load_config(preset)
        data = load_offline_data(config.data)
        torch.manual_seed(0)
        model = DynamicsEnsemble.for_data(data.train, members=args.members, elites=args.elites)
        start = time.perf_counter()
        fit_dynamics(model, data.train, steps=args.steps, seed=0)
        seconds = time.perf_counter() - start
        test = held_out_error(model, data.train, data.test)
        results[config.data.dataset_id] = {"seconds": seconds, "train_rows": len(data.train),
                                           "test_rows": len(data.test), **test.__dict__, "skill": test.skill}
        rows.append([config.data.dataset_id, len(data.train), len(data.test), f"{test.next_obs_mse:.4f}",
                     f"{test.next_obs_mse_no_change:.4f}", f"{test.skill:.3f}",
                     f"{test.reward_mse:.4f} / {test.reward_mse_mean:.4f}",
                     f"{test.cost_brier:.4f} / {test.cost_brier_base_rate:.4f}", f"{seconds:.0f}"])
        print(rows[-1], flush=True)
    print(markdown_table(["dataset", "train rows", "test rows", "s' mse", "s' mse, no change", "skill",
                          "r mse / mean's", "cost Brier / base rate's", "fit s"], rows))
    write_json(args.out, {"machine": machine(), "steps": args.steps, "members": args.members,
                          "elites": args.elites, "results": results})


if __name__ == "__main__":
    main()
