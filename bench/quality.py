"""Quality table: the gated controller, plain CQL and BC (from a `safecritic run` report)
beside d3rlpy's CQL (the policy bench/vs_d3rlpy.py saved), in every engine, same seeds.

    python bench/quality.py runs/pointnav --episodes 200 --out runs/bench/quality.json

The report's rows were produced by `safecritic run` through the exported TorchScript
files; d3rlpy's save_policy TorchScript is rolled out here on the same episode seeds
(deploy.seed), so every row shares its episodes. Accident rates carry the two-sided
interval whose ends are one-sided 95% Clopper-Pearson bounds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

from safecritic.controller.evaluation import rollout_policy  # noqa: E402
from safecritic.deploy.certify import clopper_pearson  # noqa: E402
from safecritic.envs.rollout import summarize  # noqa: E402

KEEP = {"gated (full)": "safecritic gated controller", "plain_actor": "plain CQL actor (same run)",
        "bc": "BC (behaviour prior's mode)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run that went through `safecritic run` (has report/report.json)")
    parser.add_argument("--d3rlpy-policy", type=Path, default=Path("runs/bench/vs_d3rlpy/d3rlpy_policy.pt"))
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/quality.json"))
    args = parser.parse_args()
    report = json.loads((args.run_dir / "report" / "report.json").read_text())
    rows = [dict(r, name=KEEP[r["variant"]]) for r in report["ablations"] if r["variant"] in KEEP]
    engines = sorted({r["env_id"] for r in rows})
    if args.d3rlpy_policy.is_file():
        torch.set_num_threads(1)
        policy = torch.jit.load(str(args.d3rlpy_policy))

        @torch.no_grad()
        def act(obs: np.ndarray) -> np.ndarray:
            return policy(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].numpy()

        for env_id in engines:
            s = summarize(rollout_policy(act, env_id, args.episodes, report["seed"]))
            n = round(s["accident_rate"] * args.episodes)
            low, high = clopper_pearson(n, args.episodes)
            rows.append({"name": "d3rlpy 2.8.1 CQL (bench/vs_d3rlpy.py)", "env_id": env_id, "mean_return": s["mean_return"],
                         "success_rate": s["success_rate"], "accident_rate": s["accident_rate"],
                         "accident_rate_low": low, "accident_rate_upper": high})
    else:
        print(f"no d3rlpy policy at {args.d3rlpy_policy}: run bench/vs_d3rlpy.py first for that row")
    rows.sort(key=lambda r: (r["env_id"], list(KEEP.values()).index(r["name"]) if r["name"] in KEEP.values() else 9))
    table = markdown_table(
        ["engine", "controller", "mean return", "success", "accident rate [95% CP]"],
        [[r["env_id"].split("/")[-1], r["name"], f"{r['mean_return']:.2f}", f"{r['success_rate']:.1%}",
          f"{r['accident_rate']:.1%} [{r['accident_rate_low']:.1%}, {r['accident_rate_upper']:.1%}]"] for r in rows],
    )
    write_json(args.out, {"machine": machine(), "run": str(args.run_dir), "episodes": report["episodes"],
                          "seed": report["seed"], "rows": rows})
    print(table)


if __name__ == "__main__":
    main()
